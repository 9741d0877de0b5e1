//! No personal data in clear on disk or in the server's logs: planted values are
//! imported and read back through the HTTP API of a real `consentry serve`, then
//! every file under the data directory and the server's whole log are searched.

use crate::support::{contains, files_under, Cli};
use std::process::Stdio;
use std::time::Duration;

const PLANTED: [&str; 8] = [
    "zelda.planted",
    "ygritte.planted",
    "612398745",
    "687123459",
    "Zeldaplanted",
    "Plantedsurname",
    "Ygritteplanted",
    "Wildlingplanted",
];

/// Kills the server if the test fails before stopping it.
struct ServerGuard(Option<std::process::Child>);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn planted_values_never_reach_the_disk_or_the_server_log() {
    let cli = Cli::init();
    let key = std::fs::read_to_string(cli.path("owner.key")).unwrap().trim().to_string();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let log_path = cli.path("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = cli
        .command()
        .args(["--log-format", "json", "serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("CONSENTRY_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut guard = ServerGuard(Some(server));
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let csv = "email,phone,first_name,last_name,consent_ip\n\
        zelda.planted@example.com,+31612398745,Zeldaplanted,Plantedsurname,192.0.2.7\n\
        ygritte.planted@example.org,0687123459,Ygritteplanted,Wildlingplanted,\n";
    let r = client
        .post(format!(
            "{base}/api/v1/imports?list=planted&source=web%20form&region=NL&channels=email,sms"
        ))
        .bearer_auth(&key)
        .header("Content-Type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let report: serde_json::Value = r.json().await.unwrap();
    assert_eq!(report["counts"]["created"], 2, "{report}");
    let purpose = [("X-Consentry-Purpose", "planted-value test")];
    let mut seen = String::new();
    for email in ["zelda.planted@example.com", "ygritte.planted@example.org"] {
        for with_purpose in [false, true] {
            let mut req = client
                .post(format!("{base}/api/v1/contacts/lookup"))
                .bearer_auth(&key)
                .json(&serde_json::json!({ "email": email }));
            if with_purpose {
                req = req.header(purpose[0].0, purpose[0].1);
            }
            let v: serde_json::Value = req.send().await.unwrap().json().await.unwrap();
            let id = v["id"].as_str().unwrap_or_else(|| panic!("lookup answered {v}")).to_string();
            for path in [
                format!("/api/v1/contacts/{id}"),
                format!("/api/v1/contacts/{id}/consents"),
                format!("/api/v1/contacts/{id}/consents/proof"),
            ] {
                let r = client
                    .get(format!("{base}{path}"))
                    .bearer_auth(&key)
                    .header(purpose[0].0, purpose[0].1)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{path}: {}", r.status());
                seen.push_str(&r.text().await.unwrap());
            }
        }
    }
    let listed = client
        .get(format!("{base}/api/v1/contacts?list=planted"))
        .bearer_auth(&key)
        .header(purpose[0].0, purpose[0].1)
        .send()
        .await
        .unwrap();
    seen.push_str(&listed.text().await.unwrap());
    let export = client
        .post(format!("{base}/api/v1/exports"))
        .bearer_auth(&key)
        .json(&serde_json::json!({ "list": "planted", "purpose": "planted-value test", "format": "csv" }))
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    seen.push_str(&export.text().await.unwrap());
    // The reads really returned the values: the scan below is meaningful.
    for p in PLANTED {
        assert!(seen.contains(p), "{p} was not read back");
    }
    assert!(seen.contains("192.0.2.7"), "consent IP was not read back");

    // Stop gracefully (SIGTERM), so the log is complete and the WAL checkpointed.
    let mut server = guard.0.take().unwrap();
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(server.id().to_string())
        .status();
    let stopped = tokio::task::spawn_blocking(move || server.wait()).await.unwrap().unwrap();
    assert!(stopped.success(), "server exit: {stopped:?}");

    let log = std::fs::read(&log_path).unwrap();
    assert!(
        contains(&log, "\"route\""),
        "the server logged no requests: the log scan would prove nothing"
    );
    for p in PLANTED.iter().chain(["192.0.2.7"].iter()) {
        assert!(!contains(&log, p), "{p} is in the server log");
        for file in files_under(&cli.data_dir()) {
            assert!(!contains(&std::fs::read(&file).unwrap(), p), "{p} is in {}", file.display());
        }
    }
}
