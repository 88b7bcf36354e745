//! Certificates and keys for one control plane, generated in pure Rust (rcgen, ECDSA P-256),
//! so the harness does not depend on an `openssl` binary being installed.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, date_time_ymd,
};

/// Paths of the PEM files written by [`Pki::generate`].
#[derive(Debug, Clone)]
pub(crate) struct Pki {
    /// CA that signs both the apiserver's serving certificate and the admin client certificate.
    pub ca_cert: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    /// Client certificate with `O=system:masters`, i.e. cluster-admin through the built-in binding.
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// Separate CA for the aggregation-layer request headers. Only configured so that
    /// kube-controller-manager's delegated authentication finds a complete
    /// `extension-apiserver-authentication` ConfigMap (otherwise it logs an error every few
    /// seconds); no certificate is ever issued from it.
    pub front_proxy_ca_cert: PathBuf,
    /// Service account token signing key (ES256) and its public half for verification.
    pub service_account_key: PathBuf,
    pub service_account_pub: PathBuf,
}

impl Pki {
    /// Writes a fresh CA, serving certificate (127.0.0.1, localhost and `extra_names`, e.g. the
    /// node-facing address and the in-cluster `kubernetes` Service names), admin client
    /// certificate and service account key pair into `dir`.
    pub(crate) fn generate(dir: &Path, extra_names: &[String]) -> anyhow::Result<Pki> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let pki = Pki {
            ca_cert: dir.join("ca.crt"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            front_proxy_ca_cert: dir.join("front-proxy-ca.crt"),
            service_account_key: dir.join("sa.key"),
            service_account_pub: dir.join("sa.pub"),
        };

        let (ca_cert, issuer) = certificate_authority("testenv-ca")?;
        let (front_proxy_ca_cert, _) = certificate_authority("testenv-front-proxy-ca")?;

        let serving_key = KeyPair::generate()?;
        let mut serving_names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        serving_names.extend(extra_names.iter().cloned());
        let mut serving_params = CertificateParams::new(serving_names)?;
        serving_params.distinguished_name = name(None, "kube-apiserver");
        serving_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        serving_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        serving_params.use_authority_key_identifier_extension = true;
        set_validity(&mut serving_params);
        let serving_cert = serving_params.signed_by(&serving_key, &issuer)?;

        let admin_key = KeyPair::generate()?;
        let mut admin_params = CertificateParams::new(Vec::<String>::new())?;
        admin_params.distinguished_name = name(Some("system:masters"), "testenv-admin");
        admin_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        admin_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        admin_params.use_authority_key_identifier_extension = true;
        set_validity(&mut admin_params);
        let admin_cert = admin_params.signed_by(&admin_key, &issuer)?;

        let service_account_key = KeyPair::generate()?;

        write_file(&pki.ca_cert, &ca_cert.pem())?;
        write_file(&pki.front_proxy_ca_cert, &front_proxy_ca_cert.pem())?;
        write_file(&pki.serving_cert, &serving_cert.pem())?;
        write_file(&pki.serving_key, &serving_key.serialize_pem())?;
        write_file(&pki.admin_cert, &admin_cert.pem())?;
        write_file(&pki.admin_key, &admin_key.serialize_pem())?;
        write_file(
            &pki.service_account_key,
            &service_account_key.serialize_pem(),
        )?;
        write_file(
            &pki.service_account_pub,
            &service_account_key.public_key_pem(),
        )?;
        Ok(pki)
    }
}

/// A self-signed CA certificate and the issuer that signs with it.
fn certificate_authority(
    common_name: &str,
) -> anyhow::Result<(rcgen::Certificate, Issuer<'static, KeyPair>)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name(None, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params);
    let certificate = params.self_signed(&key)?;
    Ok((certificate, Issuer::new(params, key)))
}

fn name(organisation: Option<&str>, common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(organisation) = organisation {
        dn.push(DnType::OrganizationName, organisation);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A fixed, generous window: the certificates live only as long as one test run, and a fixed
/// window cannot be broken by clock skew between "now" here and "now" in the Go processes.
fn set_validity(params: &mut CertificateParams) {
    params.not_before = date_time_ymd(2000, 1, 1);
    params.not_after = date_time_ymd(2099, 12, 31);
}

fn write_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}
