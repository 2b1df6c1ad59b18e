//! A Rust consumer of the `atrank` crate (see Cargo.toml):
//!
//!     atrank-consumer PACKAGE_DIR tract|ort REQUEST_TIME CANDIDATE...
//!
//! Scores one request with an empty history and prints `score <index> <value>` per candidate.
use atrank::{Backend, LoadOptions, Model, Request};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let backend = match args.get(2).map(String::as_str) {
        Some("tract") => Backend::Tract,
        Some("ort") => Backend::Ort,
        _ => usage(&args[0]),
    };
    if args.len() < 5 {
        usage(&args[0]);
    }
    let request_time: i64 = args[3].parse().unwrap_or_else(|_| usage(&args[0]));
    let model = Model::load_with(&args[1], &LoadOptions::new(backend)).unwrap_or_else(|e| {
        eprintln!("consumer: {e}");
        std::process::exit(1)
    });
    let candidates: Vec<&str> = args[4..].iter().map(String::as_str).collect();
    let scores = model
        .score(&Request { behaviors: &[], candidates: &candidates, request_time })
        .unwrap_or_else(|e| {
            eprintln!("consumer: {e}");
            std::process::exit(1)
        });
    println!("atrank (Rust), {}", args[2]);
    for (i, s) in scores.iter().enumerate() {
        println!("score {i} {s:.9}");
    }
    if scores.iter().any(|s| !s.is_finite()) {
        std::process::exit(1);
    }
}

fn usage(argv0: &str) -> ! {
    eprintln!("usage: {argv0} PACKAGE_DIR tract|ort REQUEST_TIME CANDIDATE...");
    std::process::exit(2)
}
