//! Fuzz target: base64 value decoding (`secretString`, `secretKeyValues`). Decoding never panics,
//! agrees with a reference decoder, and a decoded value re-encodes to the canonical form.

use thalassa_operator::thalassa::{RevealedSecret, SecretBytes, SecretValue};

/// Reference standard-base64 decoder: padding optional (in part or whole) but never excess, no bits
/// after the last byte, only the standard alphabet.
fn reference(text: &str) -> Option<Vec<u8>> {
    let unpadded = text.trim_end_matches('=');
    let pad = text.len() - unpadded.len();
    let rem = unpadded.len() % 4;
    // Padding is optional, and so is part of it ("YQ=" for "YQ=="): the decoder is configured
    // `DecodePaddingMode::Indifferent`. More `=` than the length calls for is an error.
    if rem == 1 || pad > (4 - rem) % 4 {
        return None;
    }
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in unpadded.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (acc == 0).then_some(out)
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        // Raw bytes as a value to encode: always round-trips.
        let encoded = SecretBytes::new(data.to_vec()).to_base64();
        assert_eq!(SecretBytes::from_base64(&encoded).unwrap().expose(), data);
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let ours = SecretBytes::from_base64(text).ok();
        let expected = reference(text);
        assert_eq!(ours.as_ref().map(|b| b.expose().to_vec()), expected, "{text:?}");
        if let Some(bytes) = &ours {
            let canonical = bytes.to_base64();
            assert_eq!(canonical.trim_end_matches('='), text.trim_end_matches('='));
        }
        // The same text through the reveal response.
        let body = serde_json::json!({"version": 1, "secretString": text});
        let revealed = RevealedSecret::from_response_json(&serde_json::to_vec(&body).unwrap());
        match (revealed, expected) {
            (Ok(r), Some(bytes)) => {
                assert_eq!(r.value, SecretValue::String(SecretBytes::new(bytes)))
            }
            // Our own fixed words only: never any part of the value.
            (Err(e), None) => assert_eq!(e, "a secret value is not valid base64"),
            (got, want) => panic!("reveal {:?} vs reference {want:?}", got.map(|r| r.value)),
        }
    });
}
