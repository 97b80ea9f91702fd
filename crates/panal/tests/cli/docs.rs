//! `docs/events.md` must describe the events the code has.

use std::collections::BTreeMap;

use serde_json::Value;

use super::panal;

#[test]
fn docs_list_every_event_with_its_emitter_consumers_and_fields() {
    let out = panal().args(["events", "types", "--json"]).output().unwrap();
    assert!(out.status.success());
    let code: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();

    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/events.md")).unwrap();
    let catalogue = docs.split("## Catalogue").nth(1).expect("docs/events.md has a Catalogue section");
    let mut rows = BTreeMap::new();
    for line in catalogue.lines().filter(|l| l.starts_with("| `panal.")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 5, "a catalogue row has 5 cells: {line}");
        rows.insert(cells[0].trim_matches('`').to_owned(), cells);
    }

    let mut problems = Vec::new();
    for event in &code {
        let kind = event["type"].as_str().unwrap();
        let Some(cells) = rows.remove(kind) else {
            problems.push(format!("{kind} is missing from the catalogue"));
            continue;
        };
        if cells[1] != event["source"].as_str().unwrap() {
            problems.push(format!("{kind}: emitted by {} in the code, {} in the docs", event["source"], cells[1]));
        }
        // Consumers not built yet are written "name (planned)".
        let documented: Vec<&str> = cells[3]
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty() && *c != "-" && !c.ends_with("(planned)"))
            .collect();
        let actual: Vec<&str> = event["consumers"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        if documented != actual {
            problems.push(format!("{kind}: consumed by {actual:?} in the code, {documented:?} in the docs"));
        }
        for field in event["fields"].as_array().unwrap() {
            let field = field.as_str().unwrap();
            if !cells[4].contains(&format!("`{field}`")) {
                problems.push(format!("{kind}: payload field `{field}` is not in the docs"));
            }
        }
    }
    for kind in rows.keys() {
        problems.push(format!("{kind} is in the docs but not in the code"));
    }
    assert!(problems.is_empty(), "docs/events.md is out of date:\n{}", problems.join("\n"));
}
