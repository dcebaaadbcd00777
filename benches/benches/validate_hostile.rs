//! Time to refuse a hostile body: 80 KB of JSON whose `capabilities` holds
//! 40,000 numbers where strings belong, each a field error. Error collection
//! must stay linear in the body (target: under 20 ms), and the answer
//! bounded (100 errors, the rest counted in `errorsTruncated`). A good body
//! of the same schema is measured beside it for scale.
//!
//! `cargo bench -p mcp-benches --bench validate_hostile`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use garde::Validate;
use mcp_validate::{FieldCase, Limits, parse};
use serde::Deserialize;

#[derive(Debug, Deserialize, Validate)]
struct AgentCreate {
    #[garde(length(chars, min = 1, max = 200))]
    name: String,
    #[garde(length(chars, min = 1, max = 100))]
    r#type: String,
    #[serde(default)]
    #[garde(length(max = 50), inner(length(chars, min = 1, max = 100)))]
    capabilities: Vec<String>,
}

/// `{"name":"a","type":"b","capabilities":[1,1,...]}` with `items` numbers.
fn hostile(items: usize) -> Vec<u8> {
    let mut body = br#"{"name":"a","type":"b","capabilities":["#.to_vec();
    for i in 0..items {
        if i > 0 {
            body.push(b',');
        }
        body.push(b'1');
    }
    body.extend_from_slice(b"]}");
    body
}

fn bench(c: &mut Criterion) {
    let limits = Limits {
        field_case: FieldCase::CamelCase,
        ..Limits::default()
    };
    let body = hostile(40_000);
    assert!(body.len() <= limits.max_bytes, "{} bytes", body.len());
    let good = br#"{"name":"crawler","type":"web","capabilities":["fetch","parse"]}"#;

    let mut group = c.benchmark_group("validate_hostile");
    // The quadratic version took seconds per body: few samples keep it
    // measurable at all.
    group.sample_size(10);
    // The floor: the same good body deserialised, nothing validated.
    group.bench_function("bare", |b| {
        b.iter(|| {
            let agent = serde_json::from_slice::<AgentCreate>(black_box(good));
            black_box(agent.is_ok())
        })
    });
    group.bench_function("good_body", |b| {
        b.iter(|| {
            let agent = parse::<AgentCreate>(black_box(good), &limits);
            black_box(agent.is_ok())
        })
    });
    group.bench_function("40k_wrong_items", |b| {
        b.iter(|| {
            let problem = match parse::<AgentCreate>(black_box(&body), &limits) {
                Ok(_) => panic!("a hostile body was accepted"),
                Err(problem) => problem,
            };
            assert_eq!(problem.status(), 400);
            black_box(problem)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
