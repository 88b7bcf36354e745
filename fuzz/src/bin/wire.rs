//! Fuzz target: JSON decoding of every wire type the Thalassa client reads. Arbitrary bytes must
//! never panic a decoder; whatever decodes must encode and decode back to the same value.

use serde::{Serialize, de::DeserializeOwned};
use thalassa_operator::thalassa::{
    BrowseSecretsResponse, KmsKey, KmsKeyVersion, KmsRegionSummary, KmsSummary, Organisation,
    PutSecretValueResponse, Region, RevealedSecret, Secret, SecretVersion,
};

fn round_trip<T>(data: &[u8])
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(decoded) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let encoded = serde_json::to_vec(&decoded).expect("a decoded value encodes");
    let again: T = serde_json::from_slice(&encoded).expect("an encoded value decodes");
    assert_eq!(again, decoded);
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        round_trip::<Secret>(data);
        round_trip::<Vec<Secret>>(data);
        round_trip::<BrowseSecretsResponse>(data);
        round_trip::<SecretVersion>(data);
        round_trip::<Region>(data);
        round_trip::<PutSecretValueResponse>(data);
        round_trip::<KmsSummary>(data);
        round_trip::<KmsRegionSummary>(data);
        round_trip::<KmsKey>(data);
        round_trip::<KmsKeyVersion>(data);
        round_trip::<Organisation>(data);
        if let Err(e) = RevealedSecret::from_response_json(data) {
            // The error names the kind and position of the problem, never content: it must not
            // quote any string longer than a few characters from the body.
            let message = e.to_string();
            if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(data) {
                for value in map.values() {
                    if let serde_json::Value::String(s) = value {
                        assert!(s.len() < 8 || !message.contains(s.as_str()), "{message}");
                    }
                }
            }
        }
    });
}
