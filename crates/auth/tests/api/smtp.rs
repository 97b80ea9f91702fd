//! Mail through a real SMTP server (aiosmtpd, from PyPI) when `PANAL_SMTP_URL`
//! is set. `PANAL_TEST_SMTP=1` (CI) makes a missing aiosmtpd a failure; without
//! it the test is skipped with a message.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

struct Smtpd {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_smtpd() -> Option<Smtpd> {
    let required = std::env::var("PANAL_TEST_SMTP").is_ok_and(|v| v == "1");
    let has = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        assert!(!required, "PANAL_TEST_SMTP=1 but `python3 -c 'import aiosmtpd'` fails (pip install aiosmtpd)");
        // Written straight to the stream: the test harness captures `eprintln!`.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (SMTP): pip install aiosmtpd to run it; PANAL_TEST_SMTP=1 requires it"
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("panal-smtp-{}", Uuid::new_v4().simple()));
    let child = Command::new("python3")
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "aiosmtpd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Smtpd { child, port, dir })
}

fn delivered(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join("new"))
        .map(|d| d.filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn reset_mail_goes_through_smtp_when_configured() {
    let Some(smtpd) = start_smtpd() else { return };
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn_with(&db, &format!("smtp_url = \"smtp://127.0.0.1:{}\"\n", smtpd.port)).await;
    assert!(app.handle.mailer.uses_smtp());
    app.register("ada@example.com").await;
    app.post("/v1/auth/password/forgot", json!({"email": "ada@example.com"})).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let reset = loop {
        if let Some(m) = delivered(&smtpd.dir).into_iter().find(|m| m.contains("Subject: Reset your Panal password")) {
            break m;
        }
        assert!(Instant::now() < deadline, "no reset mail reached the SMTP server");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(reset.contains("To: ada@example.com"), "{reset}");
    assert!(reset.contains("From: Panal <no-reply@panal.localhost>"), "{reset}");
    assert!(app.handle.mailer.logged().is_empty(), "with SMTP, nothing is only logged");
    // The link in the delivered mail resets the password (the body is
    // quoted-printable: undo soft line breaks and `=3D`).
    let body = reset.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
    let token = body.split("#token=").nth(1).unwrap_or_else(|| panic!("{reset}")).split_whitespace().next().unwrap();
    let r =
        app.post("/v1/auth/password/reset", json!({"token": token, "new_password": "a brand new passphrase"})).await;
    assert_eq!(r.status(), 204);
}
