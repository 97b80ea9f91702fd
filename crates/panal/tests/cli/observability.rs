//! What a monitoring stack reads from `panal up`: every service's `/metrics`
//! has the process's resources and (with a database) its bus tables' gauges,
//! and passes `promtool check metrics` (Prometheus's own linter; Debian's
//! `prometheus` package ships it, and CI installs it) when
//! `PANAL_TEST_PROMTOOL` names it.

use std::io::Write;
use std::process::{Command, Stdio};

use super::{free_offset, temp_dir, terminate, up};

#[tokio::test]
async fn every_metrics_endpoint_reports_the_process_and_the_bus_and_passes_promtool() {
    let promtool = std::env::var("PANAL_TEST_PROMTOOL").ok();
    if promtool.is_none() {
        let _ = writeln!(std::io::stderr(), "SKIPPED (promtool): set PANAL_TEST_PROMTOOL=promtool to run it");
    }
    let dir = temp_dir();
    let offset = free_offset();
    let (mut running, _) = up(&dir, offset);
    let http = reqwest::Client::new();
    let mut failures = Vec::new();
    // (service, port, its own families, whether it has an outbox, whether it consumes with an inbox)
    let services = [
        ("gateway", 8000, &[][..], false, false),
        ("auth", 8001, &[][..], true, true),
        ("users", 8002, &[][..], true, true),
        ("realtime", 8003, &["realtime_connections", "realtime_publications_total"][..], false, false),
        ("chat", 8004, &[][..], true, true),
        ("game", 8005, &["game_live_matches", "game_tick_lateness_seconds", "game_frames_total"][..], true, true),
        ("tournament", 8006, &[][..], true, true),
        ("stats", 8007, &[][..], true, true),
        ("ai", 8008, &[][..], true, true),
        ("ledger", 8009, &[][..], false, true),
        ("notify", 8010, &[][..], true, true),
    ];
    for (service, port, own, outbox, consumes) in services {
        let base = format!("http://127.0.0.1:{}", port + offset);
        // Some traffic first, so that every family has samples to check.
        for path in ["/healthz", "/readyz", "/openapi.json", "/no-such-path"] {
            http.get(format!("{base}{path}")).send().await.unwrap();
        }
        let text = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        let value = |family: &str| {
            text.lines()
                .find(|l| l.starts_with(family) && !l.starts_with('#'))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        };
        assert!(value("process_resident_memory_bytes").is_some_and(|v| v > 1e6), "{service}: {text}");
        assert!(value("process_open_fds").is_some_and(|v| v > 3.0), "{service}: {text}");
        assert_eq!(value("service_ready"), Some(1.0), "{service} says it is ready: {text}");
        // Services with a database report their bus tables, and those that
        // consume, how far behind they are.
        let mut families = own.to_vec();
        if outbox {
            families.extend(["bus_outbox_backlog", "bus_outbox_oldest_age_seconds", "bus_dead_letters"]);
        }
        if consumes {
            families.push("bus_consumer_lag_seconds");
        }
        for family in families {
            assert!(text.contains(&format!("# TYPE {family} ")), "{service} has no {family}: {text}");
        }
        let Some(promtool) = &promtool else { continue };
        let mut check = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run promtool");
        check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = check.wait_with_output().unwrap();
        if !out.status.success() {
            failures.push(format!(
                "{service}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    terminate(&mut running);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "promtool check metrics failed:\n{}", failures.join("\n"));
}
