//! Shared helpers for the emulator conformance tests: a started emulator and a tiny client.
#![allow(dead_code)] // each test binary uses a different subset

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};
use thalassa_emulator::{Control, Emulator, EmulatorConfig, TokenSpec};

pub const REGION: &str = "nl-01";
pub const ORG: &str = "org-local";
pub const TOKEN: &str = "test-token";

pub fn b64(s: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

pub fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("valid base64")
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }
}

pub struct Api {
    pub emu: Emulator,
    pub http: reqwest::Client,
    /// `Authorization` header value; `None` sends none.
    pub auth: Option<String>,
    pub org: Option<String>,
    pub project: Option<String>,
}

pub fn http_client() -> reqwest::Client {
    // reqwest is built without a bundled provider; plain http needs none, but the builder asks.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

impl Api {
    pub async fn start() -> Api {
        Self::start_with(EmulatorConfig {
            tokens: vec![TokenSpec::bearer(TOKEN)],
            ..EmulatorConfig::default()
        })
        .await
    }

    pub async fn start_with(config: EmulatorConfig) -> Api {
        let emu = Emulator::start(config).await.expect("emulator starts");
        let auth = Some(format!("Bearer {}", emu.token()));
        Api {
            emu,
            http: http_client(),
            auth,
            org: Some(ORG.to_owned()),
            project: None,
        }
    }

    pub fn control(&self) -> Control {
        self.emu.control()
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.send_as(self.auth.as_deref(), method, path, body).await
    }

    pub async fn send_as(
        &self,
        auth: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .http
            .request(method, format!("{}{}", self.emu.base_url(), path));
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        if let Some(org) = &self.org {
            request = request.header("X-Organisation-Identity", org);
        }
        if let Some(project) = &self.project {
            request = request.header("X-Project-Identity", project);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request is sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, None).await
    }

    pub async fn create_key(&self, name: &str, key_type: &str) -> String {
        let r = self
            .send(
                "POST",
                &format!("/v1/kms/{REGION}/keys"),
                Some(json!({"name": name, "keyType": key_type})),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["identity"].as_str().unwrap().to_owned()
    }

    pub async fn create_secret(&self, path: &str, key: &str, value: &str) -> Resp {
        self.send(
            "POST",
            &format!("/v1/secrets/{REGION}/secrets"),
            Some(json!({"path": path, "kmsKeyIdentity": key, "secretString": b64(value)})),
        )
        .await
    }

    pub async fn put_string(&self, path: &str, value: &str) -> Resp {
        self.send(
            "POST",
            &format!("/v1/secrets/{REGION}/secret{path}/versions"),
            Some(json!({"path": path, "secretString": b64(value)})),
        )
        .await
    }

    pub async fn reveal(&self, path: &str, version: Option<u64>) -> Resp {
        let body = version.map(|v| json!({"path": path, "version": v}));
        self.send(
            "POST",
            &format!("/v1/secrets/{REGION}/secret{path}/value"),
            body,
        )
        .await
    }

    /// Reveals and decodes a string secret.
    pub async fn reveal_string(&self, path: &str, version: Option<u64>) -> String {
        let r = self.reveal(path, version).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        String::from_utf8(unb64(r.body["secretString"].as_str().unwrap())).unwrap()
    }
}
