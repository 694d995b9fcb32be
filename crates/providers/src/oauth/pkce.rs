//! PKCE (RFC 7636) verifiers and S256 challenges, and random `state` values.
//!
//! The verifier is 32 random bytes in base64url without padding (43 characters, inside the
//! RFC's 43–128 range); the challenge is `BASE64URL(SHA256(verifier))`. Only S256 is offered:
//! `plain` would send the secret in the clear. This file must not log a verifier.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clawline_core::secret::SecretString;

/// A verifier kept until the code exchange, and the challenge sent with the authorization.
#[derive(Debug, Clone)]
pub struct Pkce {
    pub verifier: SecretString,
    pub challenge: String,
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        // The system RNG failing is not recoverable; make that loud rather than predictable.
        panic!("the system random number generator failed");
    }
    b
}

/// The S256 challenge for `verifier`.
pub fn challenge_for(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref())
}

/// A fresh verifier and its challenge.
pub fn generate() -> Pkce {
    let verifier = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let challenge = challenge_for(&verifier);
    Pkce { verifier: SecretString::new(verifier), challenge }
}

/// A random `state` value (16 bytes, hex) that ties a callback to the request that asked for it.
pub fn random_state() -> String {
    random_bytes::<16>().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_rfc_7636_example() {
        // RFC 7636, Appendix B.
        assert_eq!(
            challenge_for("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifiers_are_fresh_and_well_formed() {
        let a = generate();
        let b = generate();
        assert_ne!(a.verifier, b.verifier);
        let v = a.verifier.expose();
        assert_eq!(v.len(), 43);
        assert!(v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(a.challenge, challenge_for(v));
        assert_eq!(random_state().len(), 32);
        assert_ne!(random_state(), random_state());
    }
}
