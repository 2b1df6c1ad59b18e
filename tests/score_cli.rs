//! `atrank score`, run as a user would: the packages' golden requests in as JSON (one request,
//! a JSON array, JSON lines, standard input), scores out checked against the trainer's
//! (golden.json, not atrank), a bad request among good ones, and unreadable input.
#![cfg(feature = "batch")]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

use common::{read_golden, request_tolerance, Golden, GoldenRequest};

const BIN: &str = env!("CARGO_BIN_EXE_atrank");

fn scratch(name: &str) -> PathBuf {
    common::scratch("score_cli", name)
}

/// A golden request as the JSON a service would send (plus its name, copied to the output).
fn request_json(req: &GoldenRequest) -> Value {
    let behaviors: Vec<Value> = req
        .behaviors
        .iter()
        .map(|b| {
            let mut o = json!({"id": b.id, "timestamp": b.timestamp});
            if let Some(a) = &b.action {
                o["action"] = json!(a);
            }
            if let Some(g) = &b.group {
                o["group"] = json!(g);
            }
            if let Some(c) = &b.category {
                o["category"] = json!(c);
            }
            if !b.features.is_empty() {
                o["features"] = json!(b.features);
            }
            o
        })
        .collect();
    json!({"name": req.name, "request_time": req.request_time, "behaviors": behaviors,
           "candidates": req.candidates})
}

fn run(package: &Path, extra: &[&str], input: &str, stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("score")
        .arg("--model")
        .arg(package)
        .args(extra)
        .arg(input);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().unwrap()
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every output line has the golden scores of its request, within the request's tolerance.
fn check(golden: &Golden, reqs: &[GoldenRequest], got: &[Value], what: &str) {
    assert_eq!(got.len(), reqs.len(), "{what}: one line per request");
    for (req, line) in reqs.iter().zip(got) {
        assert_eq!(line["name"], json!(req.name), "{what}: order and name");
        let scores: Vec<f64> = line["scores"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: {} has no scores: {line}", req.name))
            .iter()
            .map(|s| s.as_f64().unwrap())
            .collect();
        assert_eq!(scores.len(), req.scores.len(), "{what}: {}", req.name);
        let tol = request_tolerance(golden, req);
        for (k, (a, b)) in scores.iter().zip(&req.scores).enumerate() {
            assert!(
                (a - f64::from(*b)).abs() <= tol,
                "{what}: {} candidate {k}: {a} vs golden {b} (tolerance {tol:e})",
                req.name
            );
        }
    }
}

fn backends() -> Vec<Vec<String>> {
    let mut out = vec![vec!["--backend".to_string(), "tract".to_string()]];
    if let Some(lib) = common::ort_library() {
        out.push(vec![
            "--backend".into(),
            "ort".into(),
            "--ort-lib".into(),
            lib.display().to_string(),
        ]);
    }
    out
}

#[test]
fn golden_requests_in_every_input_shape_score_as_the_trainer() {
    for package in common::packages() {
        let golden = read_golden(&package);
        let reqs: Vec<Value> = golden.requests.iter().map(request_json).collect();
        let dir = scratch(package.file_name().unwrap().to_str().unwrap());
        let jsonl = dir.join("requests.jsonl");
        std::fs::write(
            &jsonl,
            reqs.iter()
                .map(|r| r.to_string() + "\n")
                .collect::<String>(),
        )
        .unwrap();
        let array = dir.join("requests.json");
        std::fs::write(&array, serde_json::to_string_pretty(&reqs).unwrap()).unwrap();
        for backend in backends() {
            let extra: Vec<&str> = backend.iter().map(String::as_str).collect();
            let what = format!("{} {}", package.display(), extra[1]);
            for (input, stdin) in [
                (jsonl.to_str().unwrap(), None),
                (array.to_str().unwrap(), None),
                ("-", Some(std::fs::read_to_string(&jsonl).unwrap())),
            ] {
                let out = run(&package, &extra, input, stdin.as_deref());
                assert!(
                    out.status.success(),
                    "{what} {input}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                check(
                    &golden,
                    &golden.requests,
                    &lines(&out),
                    &format!("{what} {input}"),
                );
            }
            // one request, pretty-printed over several lines, is one request
            let one = dir.join("one.json");
            std::fs::write(&one, serde_json::to_string_pretty(&reqs[0]).unwrap()).unwrap();
            let out = run(&package, &extra, one.to_str().unwrap(), None);
            assert!(out.status.success());
            let got = lines(&out);
            assert_eq!(got.len(), 1);
            check(
                &golden,
                &golden.requests[..1],
                &got,
                &format!("{what} one request"),
            );
        }
    }
}

#[test]
fn a_bad_request_gets_an_error_line_and_the_others_still_score() {
    let package = common::packages().into_iter().next().unwrap();
    let golden = read_golden(&package);
    let good = request_json(&golden.requests[0]);
    let mut no_candidates = good.clone();
    no_candidates["candidates"] = json!([]);
    let mut bad_id = good.clone();
    bad_id["behaviors"][0]["id"] = json!({"not": "an id"});
    let text = [
        good.clone(),
        no_candidates,
        bad_id,
        json!({"request_id": 7}),
        good,
    ]
    .iter()
    .map(|v| v.to_string() + "\n")
    .collect::<String>();
    let out = run(&package, &[], "-", Some(&text));
    assert_eq!(out.status.code(), Some(1), "some requests failed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 of 5 requests failed"));
    let got = lines(&out);
    assert_eq!(got.len(), 5);
    assert!(got[0]["scores"].is_array() && got[4]["scores"].is_array());
    assert_eq!(got[0]["scores"], got[4]["scores"]);
    for (k, code, needle) in [
        (1, 2, "candidate"),
        (2, 2, "behaviors[0].id"),
        (3, 2, "request_time"),
    ] {
        let e = &got[k]["error"];
        assert_eq!(e["code"], json!(code), "line {k}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "line {k}: {e} should mention {needle}"
        );
    }
    assert_eq!(
        got[3]["request_id"],
        json!(7),
        "request_id is copied to the output"
    );
}

#[test]
fn unreadable_input_or_package_exits_2() {
    let package = common::packages().into_iter().next().unwrap();
    let out = run(&package, &[], "-", Some("{\"request_time\": 1, oops"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid JSON"));
    let missing = run(&package, &[], "/nonexistent/requests.jsonl", None);
    assert_eq!(missing.status.code(), Some(2));
    let empty = scratch("empty-package");
    let out = run(&empty, &[], "-", Some("{}"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot load"));
}

/// `--exclude-seen`: a candidate from the request's own history scores `null` (-infinity has no
/// JSON form); without the flag the same candidate gets a number.
#[test]
fn exclude_seen_writes_null_for_a_candidate_from_the_history() {
    let package = common::repo().join("tests/fixtures/tiny");
    let golden = common::read_golden(&package);
    let req = golden
        .requests
        .iter()
        .find(|r| !r.behaviors.is_empty())
        .unwrap();
    let mut request = request_json(req);
    let seen = req.behaviors[0].id.clone();
    request["candidates"] = json!([seen, "no-such-item"]);
    let text = request.to_string();
    let plain = lines(&run(&package, &[], "-", Some(&text)));
    let excluding = lines(&run(&package, &["--exclude-seen"], "-", Some(&text)));
    assert!(plain[0]["scores"][0].is_f64(), "{plain:?}");
    assert!(excluding[0]["scores"][0].is_null(), "{excluding:?}");
    assert_eq!(excluding[0]["scores"][1], plain[0]["scores"][1]);
}
