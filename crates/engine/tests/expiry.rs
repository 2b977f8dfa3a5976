//! `ExpiryWatcher::tick(now)`: each override is announced once when it expires (an
//! `override.expired` event and an `override.expire` audit entry), however large the backlog;
//! active and revoked overrides are not.

#![allow(clippy::unwrap_used)]

mod canary_support;

use canary_support::World;
use deploy_safety_api_types::{AuditListQuery, CreateOverrideRequest};
use deploy_safety_core::{Action, Environment, EventType};
use deploy_safety_engine::ExpiryWatcher;

fn request(release: String, ttl_minutes: i64) -> CreateOverrideRequest {
    CreateOverrideRequest {
        service: None,
        action: Action::Rollback,
        environment: Environment::PRODUCTION,
        reason: "CHG-77 hotfix window".to_owned(),
        approver: None,
        ttl_minutes: Some(ttl_minutes),
        release_id: Some(release),
    }
}

async fn expiry_entries(world: &World) -> usize {
    world
        .app
        .audit_page(AuditListQuery {
            action: Some("override.expire".to_owned()),
            limit: Some(1_000),
            ..AuditListQuery::default()
        })
        .await
        .unwrap()
        .entries
        .len()
}

#[tokio::test]
async fn a_backlog_of_expired_overrides_is_announced_in_one_tick_and_only_once() {
    let world = World::new().await;
    let watcher = ExpiryWatcher::new(world.app.clone());
    // More than one transaction's worth (100) expire at 30 minutes; one lives 2 hours; one is
    // revoked before it expires.
    for i in 0..250 {
        world
            .app
            .create_override(&world.lead, request(format!("v1.{i}.0"), 30))
            .await
            .unwrap();
    }
    world
        .app
        .create_override(&world.lead, request("v2.0.0".to_owned(), 120))
        .await
        .unwrap();
    let revoked = world
        .app
        .create_override(&world.lead, request("v3.0.0".to_owned(), 30))
        .await
        .unwrap();
    world
        .app
        .revoke_override(&world.lead, &revoked.record.id)
        .await
        .unwrap();

    assert_eq!(
        watcher.tick(world.now()).await.unwrap(),
        0,
        "nothing expired yet"
    );
    world.advance(30 * 60_000);
    assert_eq!(watcher.tick(world.now()).await.unwrap(), 250);
    assert_eq!(expiry_entries(&world).await, 250);
    let events = world.app.events_after(0, 1_000).await.unwrap();
    let expired: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == EventType::OverrideExpired)
        .collect();
    assert_eq!(expired.len(), 250);

    // Announced once: later ticks find nothing new until the two-hour one expires.
    world.advance(60_000);
    assert_eq!(watcher.tick(world.now()).await.unwrap(), 0);
    world.advance(120 * 60_000);
    assert_eq!(watcher.tick(world.now()).await.unwrap(), 1);
    assert_eq!(expiry_entries(&world).await, 251);
}
