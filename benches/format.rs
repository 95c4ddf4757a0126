//! Formatted records per second for typical output formats.
//!
//! Run: `cargo bench --bench format -- --warm-up-time 1 --measurement-time 3`

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use logrelay::config::{Style, TextFormat};
use logrelay::format::Template;
use logrelay::record::{Record, Str, Value};

/// A record as SocketHandler sends it (Python 3.11), one second apart per
/// index so the asctime cache sees realistic traffic (many per second).
fn record(i: usize) -> Record {
    let created = 1_763_700_000.0 + (i / 1000) as f64 + (i % 1000) as f64 / 1000.0;
    let f = |k: &str, v: Value| (Str::from(k), v);
    Record::new(vec![
        f("name", Value::str("payments.api")),
        f(
            "msg",
            Value::str("charged card ending 4242 for order 12345: ok"),
        ),
        f("args", Value::None),
        f("levelname", Value::str("INFO")),
        f("levelno", Value::Int(20)),
        f("pathname", Value::str("/srv/app/payments/api.py")),
        f("filename", Value::str("api.py")),
        f("module", Value::str("api")),
        f("exc_info", Value::None),
        f("exc_text", Value::None),
        f("stack_info", Value::None),
        f("lineno", Value::Int(118)),
        f("funcName", Value::str("charge")),
        f("created", Value::Float(created)),
        f("msecs", Value::Float((i % 1000) as f64)),
        f("relativeCreated", Value::Float(1234.5678)),
        f("thread", Value::Int(140_234_567_890)),
        f("threadName", Value::str("MainThread")),
        f("processName", Value::str("MainProcess")),
        f("process", Value::Int(4242)),
        f("request_id", Value::str("c0ffee")),
    ])
}

fn bench(c: &mut Criterion) {
    let records: Vec<Record> = (0..10_000).map(record).collect();
    let configs = [
        ("default", "%(asctime)s %(levelname)-8s %(name)s %(message)s", Style::Percent, None),
        (
            "cookbook",
            "%(asctime)s %(levelname)-8s %(name)s %(process)d %(message)s",
            Style::Percent,
            None,
        ),
        (
            "spec_file",
            "%(asctime)s %(levelname)-8s %(name)-15s %(process)-6s %(message)s",
            Style::Percent,
            None,
        ),
        (
            "many_fields",
            "%(asctime)s.%(msecs)03d %(levelno)d %(created)f %(pathname)s:%(lineno)d %(funcName)s %(request_id)r %(message)s",
            Style::Percent,
            Some("%Y-%m-%dT%H:%M:%S%z"),
        ),
        ("brace", "{asctime} {levelname:<8} {name:>15} {message}", Style::Brace, None),
        ("dollar", "$asctime $levelname $name $message", Style::Dollar, None),
    ];
    let mut g = c.benchmark_group("format");
    g.throughput(Throughput::Elements(records.len() as u64));
    for (label, fmt, style, datefmt) in configs {
        let spec = TextFormat {
            format: fmt.into(),
            datefmt: datefmt.map(Into::into),
            style,
            utc: false,
        };
        let tz = jiff::tz::TimeZone::get("Europe/Berlin").expect("tzdata");
        let mut t = Template::compile_with_tz(&spec, tz).expect("valid format");
        let mut out = Vec::with_capacity(1 << 20);
        g.bench_function(label, |b| {
            b.iter(|| {
                out.clear();
                for r in &records {
                    t.format(r, &mut out);
                }
                out.len()
            })
        });
    }
    g.finish();

    // The cookbook format over the real SocketHandler records the e2e and
    // filewrite benches use (fractional msecs, varied messages).
    let real = common::records();
    let mut g = c.benchmark_group("format_real");
    g.throughput(Throughput::Elements(real.len() as u64));
    let spec = TextFormat {
        format: common::COOKBOOK_FORMAT.into(),
        datefmt: None,
        style: Style::Percent,
        utc: false,
    };
    let tz = jiff::tz::TimeZone::get("Europe/Berlin").expect("tzdata");
    let mut t = Template::compile_with_tz(&spec, tz).expect("valid format");
    let mut out = Vec::with_capacity(1 << 20);
    g.bench_function("cookbook", |b| {
        b.iter(|| {
            out.clear();
            for r in &real {
                t.format(r, &mut out);
            }
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
