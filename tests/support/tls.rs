//! Certificates made at test time with the `openssl` CLI (a test CA, server certificates it
//! signs for chosen names, a self-signed one), and a tiny rustls server that misbehaves
//! after the handshake.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{ensure, Context as _};

use super::process::RunDir;

/// A certificate and its key (PEM files).
#[derive(Debug, Clone)]
pub(crate) struct CertFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// A test CA and the certificates made in its directory.
#[derive(Debug)]
pub(crate) struct Pki {
    dir: RunDir,
    /// The CA's certificate, to give `--ca`.
    pub(crate) ca: PathBuf,
    ca_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("run openssl (Debian package openssl)")?;
    ensure!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

impl Pki {
    /// A new CA in a run directory of its own.
    pub(crate) fn new() -> anyhow::Result<Self> {
        let dir = RunDir::new("tls-pki")?;
        let mut args = vec!["req", "-x509", "-nodes"];
        args.extend(EC);
        args.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=sipcheck test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(dir.path(), &args)?;
        Ok(Self {
            ca: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            dir,
        })
    }

    /// A server (and client) certificate signed by the CA for `sans` (`IP:127.0.0.1`,
    /// `DNS:localhost`), valid from now for `days` (negative: expired that long ago).
    pub(crate) fn issue(&self, name: &str, sans: &[&str], days: i32) -> anyhow::Result<CertFiles> {
        let dir = self.dir.path();
        let (key, csr, cert, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        let mut args = vec!["req", "-nodes"];
        args.extend(EC);
        let subj = format!("/CN={name}");
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &args)?;
        std::fs::write(
            dir.join(&ext),
            format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n",
                sans.join(",")
            ),
        )?;
        let ca = self.ca.to_string_lossy().into_owned();
        let ca_key = self.ca_key.to_string_lossy().into_owned();
        let days = days.to_string();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                &days,
                "-extfile",
                &ext,
            ],
        )?;
        Ok(CertFiles {
            cert: dir.join(&cert),
            key: dir.join(&key),
        })
    }

    /// A self-signed certificate for `sans` (no CA trusts it).
    pub(crate) fn self_signed(&self, name: &str, sans: &str) -> anyhow::Result<CertFiles> {
        let (key, cert) = (format!("{name}.key"), format!("{name}.pem"));
        let mut args = vec!["req", "-x509", "-nodes"];
        args.extend(EC);
        let subj = format!("/CN={name}");
        let san = format!("subjectAltName={sans}");
        args.extend([
            "-keyout", &key, "-out", &cert, "-days", "2", "-subj", &subj, "-addext", &san,
        ]);
        openssl(self.dir.path(), &args)?;
        Ok(CertFiles {
            cert: self.dir.join(&cert),
            key: self.dir.join(&key),
        })
    }

    /// A file in the CA's directory.
    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// What [`MisbehavingServer`] does once the handshake is done and the first bytes came.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Misbehaviour {
    /// Answers with bytes that are no SIP message.
    Garbage,
    /// Starts a response whose body never comes whole, and closes.
    CloseMidMessage,
    /// As [`Misbehaviour::CloseMidMessage`], closing TCP without TLS's close_notify.
    AbortMidMessage,
}

/// A rustls server on a loopback port that accepts one connection, reads what comes, does
/// its [`Misbehaviour`] and closes.
pub(crate) struct MisbehavingServer {
    /// Its address.
    pub(crate) addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl MisbehavingServer {
    pub(crate) fn start(certs: &CertFiles, what: Misbehaviour) -> anyhow::Result<Self> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_file_iter(&certs.cert)?.collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_file(&certs.key)?;
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let thread = std::thread::spawn(move || {
            let Ok((mut tcp, _)) = listener.accept() else {
                return;
            };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
            let Ok(mut conn) = rustls::ServerConnection::new(config) else {
                return;
            };
            let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
            let mut buf = [0u8; 4096];
            // The handshake, then the request's first bytes.
            if tls.read(&mut buf).unwrap_or(0) == 0 {
                return;
            }
            let reply: &[u8] = match what {
                Misbehaviour::Garbage => b"\x16\x03\x01\x00\xff\xfe garbage \x00\x01\r\n\r\n\x7f\x80",
                Misbehaviour::CloseMidMessage | Misbehaviour::AbortMidMessage => {
                    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 127.0.0.1\r\nContent-Length: 500\r\n\r\nv=0\r\n"
                }
            };
            let _ = tls.write_all(reply);
            let _ = tls.flush();
            if matches!(what, Misbehaviour::AbortMidMessage) {
                let _ = tcp.shutdown(std::net::Shutdown::Both);
                return;
            }
            tls.conn.send_close_notify();
            let _ = tls.flush();
        });
        Ok(Self {
            addr,
            thread: Some(thread),
        })
    }
}

impl Drop for MisbehavingServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // Its accept returns when the test's process ends at worst; the test's client
            // connected already.
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}
