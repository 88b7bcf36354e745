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
        if let Err(message) = RevealedSecret::from_response_json(data) {
            // The error is built from our own words, the error kind and a position, never from
            // the body: after removing those, nothing but digits and spaces may remain.
            let rest = [
                "a secret value is not valid base64",
                "neither secretString nor secretKeyValues is present",
                "both secretString and secretKeyValues are present",
                " error in the JSON body at line ",
                " column ",
                "Syntax",
                "Data",
                "Eof",
                "Io",
            ]
            .iter()
            .fold(message.clone(), |m, fixed| m.replace(fixed, " "));
            assert!(
                rest.chars().all(|c| c.is_ascii_digit() || c == ' '),
                "error text not from fixed words: {message:?}"
            );
        }
    });
}
