//! TLS to PostgreSQL through rustls (ring), chosen by the database URL as libpq's
//! `sslmode` chooses it:
//!
//! - absent, `disable`, `prefer`, `allow`: no TLS (a URL that wants TLS says so);
//! - `require`: TLS, the server's certificate not checked (as libpq does: it stops
//!   eavesdropping, not an impostor; a warning says so);
//! - `verify-ca`: TLS, the certificate chain checked against the trusted roots;
//! - `verify-full`: as `verify-ca`, and the certificate names the host connected to.
//!
//! The trusted roots are the PEM certificates of `sslrootcert=PATH`, or the
//! system's (`sslrootcert=system`, or no `sslrootcert`).

use anyhow::{bail, Context};
use deadpool_postgres::{Manager, ManagerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use std::sync::Arc;
use tokio_postgres::config::SslMode;

/// What the URL asks of the connection's transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    Off,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    pub fn describe(self) -> &'static str {
        match self {
            TlsMode::Off => "sslmode=disable",
            TlsMode::Require => "sslmode=require, certificate not checked",
            TlsMode::VerifyCa => "sslmode=verify-ca, certificate chain checked",
            TlsMode::VerifyFull => "sslmode=verify-full, certificate chain and host name checked",
        }
    }
}

/// A parsed database URL: the driver's configuration and the TLS it asks for.
pub struct Target {
    pub config: tokio_postgres::Config,
    pub mode: TlsMode,
    root_cert: Option<String>,
}

impl Target {
    /// Parses a `postgres://` URL or a `key=value` connection string. `sslmode`
    /// and `sslrootcert` are read here (the driver knows neither `verify-ca` nor
    /// `verify-full`); everything else goes to the driver.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let (rest, pairs) = split_tls_options(url);
        let mut mode = TlsMode::Off;
        let mut root_cert = None;
        for (key, value) in pairs {
            match key.as_str() {
                "sslmode" => {
                    mode = match value.as_str() {
                        "disable" | "allow" | "prefer" => TlsMode::Off,
                        "require" => TlsMode::Require,
                        "verify-ca" => TlsMode::VerifyCa,
                        "verify-full" => TlsMode::VerifyFull,
                        other => bail!("the database URL has sslmode={other}; use disable, require, verify-ca or verify-full"),
                    }
                }
                _ => root_cert = Some(value),
            }
        }
        let mut config: tokio_postgres::Config = rest
            .parse()
            .context("the database URL is not a PostgreSQL connection string (postgres://USER@HOST:PORT/DATABASE)")?;
        config.ssl_mode(if mode == TlsMode::Off { SslMode::Disable } else { SslMode::Require });
        Ok(Target { config, mode, root_cert })
    }

    /// A connection-pool manager speaking the transport the URL asks for.
    pub fn manager(&self, manager_config: ManagerConfig) -> anyhow::Result<Manager> {
        let config = self.config.clone();
        Ok(match self.mode {
            TlsMode::Off => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
            mode => {
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.client_config(mode)?);
                Manager::from_config(config, tls, manager_config)
            }
        })
    }

    /// A line for the operator when the URL's TLS setting leaves a gap, if any.
    pub fn warning(&self) -> Option<&'static str> {
        match self.mode {
            TlsMode::Require => Some(
                "the database connection is encrypted (sslmode=require) but the server's certificate is not checked; use sslmode=verify-full to rule out an impostor",
            ),
            _ => None,
        }
    }

    fn client_config(&self, mode: TlsMode) -> anyhow::Result<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("failed to set up TLS")?;
        let verifier: Arc<dyn ServerCertVerifier> = match mode {
            TlsMode::Require => Arc::new(EncryptOnly(provider)),
            TlsMode::VerifyCa | TlsMode::VerifyFull => {
                let roots = Arc::new(self.roots()?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .context("failed to set up certificate verification")?;
                if mode == TlsMode::VerifyCa {
                    Arc::new(ChainOnly(webpki))
                } else {
                    webpki
                }
            }
            TlsMode::Off => bail!("no TLS asked for"),
        };
        Ok(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth())
    }

    fn roots(&self) -> anyhow::Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        match self.root_cert.as_deref() {
            Some(path) if path != "system" => {
                let certs = CertificateDer::pem_file_iter(path)
                    .with_context(|| format!("failed to read sslrootcert {path}"))?
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("sslrootcert {path} is not a PEM certificate file"))?;
                for cert in certs {
                    roots
                        .add(cert)
                        .with_context(|| format!("sslrootcert {path} holds a certificate that cannot be a trust root"))?;
                }
                if roots.is_empty() {
                    bail!("sslrootcert {path} holds no certificate");
                }
            }
            _ => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    bail!("no trusted root certificates found on this system; give sslrootcert=PATH in the database URL");
                }
            }
        }
        Ok(roots)
    }
}

/// Takes `sslmode` and `sslrootcert` out of a URL's query or a `key=value`
/// string; returns the rest and the pairs taken.
fn split_tls_options(url: &str) -> (String, Vec<(String, String)>) {
    let is_tls_key = |k: &str| k == "sslmode" || k == "sslrootcert";
    let mut taken = Vec::new();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_string(), taken);
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if is_tls_key(k) {
                taken.push((
                    k.to_string(),
                    percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned(),
                ));
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rest, taken)
    } else {
        let mut kept = Vec::new();
        for token in url.split_whitespace() {
            match token.split_once('=') {
                Some((k, v)) if is_tls_key(k) => taken.push((k.to_string(), v.trim_matches('\'').to_string())),
                _ => kept.push(token),
            }
        }
        (kept.join(" "), taken)
    }
}

/// `sslmode=require`: any certificate, but the handshake's signatures are still
/// checked (the connection is encrypted to whoever holds the key).
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the name on the
/// certificate is not compared with the host.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_read_from_urls_and_connection_strings() {
        let t = Target::parse("postgres://u@db.example:5432/consentry?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x")
            .expect("parses");
        assert_eq!(t.mode, TlsMode::VerifyFull);
        assert_eq!(t.root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(t.config.get_application_name(), Some("x"));
        let t = Target::parse("host=db.example user=u sslmode=require dbname=c").expect("parses");
        assert_eq!(t.mode, TlsMode::Require);
        assert_eq!(t.config.get_dbname(), Some("c"));
        for plain in [
            "postgres://u@h/d",
            "postgres://u@h/d?sslmode=disable",
            "postgres://u@h/d?sslmode=prefer",
        ] {
            let t = Target::parse(plain).expect("parses");
            assert_eq!(t.mode, TlsMode::Off, "{plain}");
            assert_eq!(t.config.get_ssl_mode(), SslMode::Disable, "{plain}");
        }
    }

    #[test]
    fn an_unknown_mode_or_a_missing_root_file_is_a_clear_error() {
        let Err(e) = Target::parse("postgres://u@h/d?sslmode=always") else {
            panic!("sslmode=always accepted")
        };
        assert!(e.to_string().contains("sslmode=always"), "{e}");
        let t = Target::parse("postgres://u@h/d?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem").expect("parses");
        let Err(e) = t.manager(ManagerConfig::default()) else {
            panic!("a missing root file accepted")
        };
        assert!(format!("{e:#}").contains("/nonexistent/ca.pem"), "{e:#}");
    }
}
