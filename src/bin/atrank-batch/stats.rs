//! The end-of-run summary of the model's counters (`Model::stats`): calls and failures by code
//! per entry point, latency percentiles estimated from the histogram, cache and tract plans.

use atrank::metrics::{error_code, Entry};
use atrank::Model;

fn ms(d: Option<std::time::Duration>) -> String {
    d.map_or_else(
        || "-".into(),
        |d| format!("{:.2} ms", d.as_secs_f64() * 1e3),
    )
}

/// One line per entry point that was called, then the cache and tract plan counters.
pub fn summary(model: &Model) -> Vec<String> {
    let s = model.stats();
    let mut lines = Vec::new();
    for entry in Entry::ALL {
        let c = s.entry(entry);
        if c.calls == 0 {
            continue;
        }
        let failures: Vec<String> = c
            .failures
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(slot, n)| match error_code(slot) {
                Some(code) => format!("{code:?} {n}"),
                None => format!("code {slot} {n}"),
            })
            .collect();
        lines.push(format!(
            "{}: {} calls, {} failed{}; latency p50 {}, p99 {} (from the histogram), mean {}",
            entry.name(),
            c.calls,
            c.failed(),
            if failures.is_empty() {
                String::new()
            } else {
                format!(" ({})", failures.join(", "))
            },
            ms(c.latency_quantile(0.5)),
            ms(c.latency_quantile(0.99)),
            ms(c.mean_latency()),
        ));
    }
    if lines.is_empty() {
        lines.push("no scoring calls".into());
    }
    if s.cache.capacity > 0 {
        lines.push(format!(
            "encoding cache: {} hits, {} misses, {} of {} entries",
            s.cache.hits, s.cache.misses, s.cache.entries, s.cache.capacity
        ));
    }
    let p = s.plans;
    if p.symbolic_runs + p.concrete_runs > 0 {
        lines.push(format!(
            "tract plans: {} built ({} failed), {} held; runs: {} on specialised plans, {} \
             symbolic; fused kernels: {} attention, {} layer norm",
            p.plans_built,
            p.build_failures,
            p.plans,
            p.concrete_runs,
            p.symbolic_runs,
            p.fused_attention,
            p.fused_layer_norm
        ));
    }
    if s.ort_sessions > 0 {
        lines.push(format!("ONNX Runtime sessions: {}", s.ort_sessions));
    }
    lines
}
