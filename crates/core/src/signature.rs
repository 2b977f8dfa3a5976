//! HMAC-SHA256 (RFC 2104) for signing webhook bodies, so receivers can check a delivery came
//! from us and was not altered.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of `message` under `key` (RustCrypto's `hmac`).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        unreachable!("HMAC accepts keys of every length")
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The value of the `X-Deploy-Safety-Signature` header: `sha256=` and the hex HMAC of the body.
pub fn signature_header(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), body))
    )
}

/// Whether `header` (`sha256=<hex>`, as GitHub's `X-Hub-Signature-256` and our own
/// signature headers carry it) is the HMAC-SHA256 of `body` under `secret`. The comparison is
/// constant-time (`Mac::verify_slice`): how much of a forged signature matches leaks nothing.
pub fn verify_signature_header(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(presented) = header
        .trim()
        .strip_prefix("sha256=")
        .and_then(|hex_text| hex::decode(hex_text).ok())
    else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) else {
        unreachable!("HMAC accepts keys of every length")
    };
    mac.update(body);
    mac.verify_slice(&presented).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_right_signature() {
        let body = br#"{"action":"requested"}"#;
        let good = signature_header("s3cret", body);
        assert!(verify_signature_header("s3cret", body, &good));
        let cases = [
            good.replace("sha256=", "sha1="),
            good.trim_start_matches("sha256=").to_owned(),
            format!("{}0", &good[..good.len() - 1]),
            good[..good.len() - 2].to_owned(),
            "sha256=zz".to_owned(),
            String::new(),
            signature_header("other", body),
        ];
        for bad in cases {
            assert!(!verify_signature_header("s3cret", body, &bad), "{bad}");
        }
        assert!(!verify_signature_header("s3cret", b"{}", &good));
    }

    /// RFC 4231 test cases 1, 2, 6 and 7 (short key, text key, long key, long key and data).
    #[test]
    fn rfc_4231_vectors() {
        let cases: [(&[u8], &[u8], &str); 4] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                &[0xaa; 131],
                b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (key, message, expected) in cases {
            assert_eq!(hex::encode(hmac_sha256(key, message)), expected);
        }
    }

    #[test]
    fn header_format() {
        let header = signature_header("s3cret", b"{}");
        assert!(header.starts_with("sha256="));
        assert_eq!(header.len(), 7 + 64);
    }
}
