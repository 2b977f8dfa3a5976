//! Principals and their tokens.

use deploy_safety_core::{Role, Timestamp};

use crate::{StoreError, TokenRecord};

/// Principals and their tokens.
pub trait TokenTx {
    /// The role of the principal with this name, if it exists.
    fn principal_role(&mut self, name: &str) -> Result<Option<Role>, StoreError>;
    fn insert_principal(&mut self, name: &str, role: Role, at: Timestamp)
    -> Result<(), StoreError>;
    /// Inserts a token of an existing principal (`token.role` is the principal's).
    fn insert_token(&mut self, token: &TokenRecord) -> Result<(), StoreError>;
    fn get_token(&mut self, id: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Every token, oldest first.
    fn list_tokens(&mut self) -> Result<Vec<TokenRecord>, StoreError>;
    fn count_tokens(&mut self) -> Result<u64, StoreError>;
    /// Marks the token revoked; false if it does not exist or was already revoked.
    fn revoke_token(&mut self, id: &str, at: Timestamp) -> Result<bool, StoreError>;
    /// Revokes every active token of the principal; returns the tokens revoked.
    fn revoke_tokens_of(
        &mut self,
        name: &str,
        at: Timestamp,
    ) -> Result<Vec<TokenRecord>, StoreError>;
}
