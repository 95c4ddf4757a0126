//! Host tests on the WAT fixtures in `tests/fixtures/wasm/`: every host
//! function, every limit, and the precise load errors.

use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::record::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wasm")
        .join(name)
}

fn config(name: &str) -> WasmFilterConfig {
    WasmFilterConfig {
        path: fixture(name),
        config: serde_json::Value::Null,
        fuel: None,
        timeout_ms: None,
        max_memory_bytes: None,
        on_error: OnError::Pass,
    }
}

fn load(name: &str) -> WasmFilter {
    match WasmFilter::load("t", &config(name)) {
        Ok(f) => f,
        Err(e) => panic!("{name}: {e}"),
    }
}

fn load_err(c: &WasmFilterConfig) -> String {
    match WasmFilter::load("t", c) {
        Ok(_) => panic!("{} loaded", c.path.display()),
        // Every load error names its filter first.
        Err(e) => {
            let e = e.to_string();
            assert!(e.starts_with("filter t: "), "{e}");
            e
        }
    }
}

fn typical() -> Record {
    Record::of(&[
        ("name", Value::str("app.db")),
        ("msg", Value::str("hello")),
        ("levelno", Value::Int(20)),
        ("levelname", Value::str("INFO")),
    ])
}

fn keys(r: &Record) -> Vec<&str> {
    r.fields.iter().map(|(k, _)| &**k).collect()
}

fn int(r: &Record, k: &str) -> i64 {
    match r.get(k) {
        Some(Value::Int(i)) => *i,
        other => panic!("{k}: {other:?}"),
    }
}

#[test]
fn noop_keeps_and_drop_all_drops() {
    let noop = load("noop.wat");
    let mut r = typical();
    assert_eq!(noop.apply(&mut r), Verdict::Keep);
    assert_eq!(r, typical());
    let drop = load("drop_all.wat");
    assert_eq!(drop.apply(&mut r), Verdict::Drop);
    assert_eq!((drop.calls(), drop.dropped(), drop.errors()), (1, 1, 0));
}

#[test]
fn field_get_returns_strings_raw_and_other_values_as_json() {
    let f = load("field_get.wat");
    let mut r = Record::of(&[("probe", Value::str("abc"))]);
    assert_eq!(f.apply(&mut r), Verdict::Keep);
    assert_eq!(int(&r, "len"), 3);
    assert_eq!(r.get("quoted"), Some(&Value::str("abc")));
    // A raw string is not JSON, so setting it back fails with -1.
    assert_eq!(int(&r, "copy_rc"), -1);
    // A buffer that is too small: the needed length, nothing written.
    assert_eq!(int(&r, "small"), 3);
    assert_eq!(int(&r, "sentinel"), 170);

    let mut r = Record::of(&[("probe", Value::Int(12345))]);
    f.apply(&mut r);
    assert_eq!(int(&r, "len"), 5);
    assert_eq!(r.get("copy"), Some(&Value::Int(12345)));
    assert_eq!(r.get("quoted"), Some(&Value::str("12345")));

    let list = Value::List(Arc::new(vec![Value::Int(1), Value::None]));
    let mut r = Record::of(&[("probe", list.clone())]);
    f.apply(&mut r);
    assert_eq!(int(&r, "len"), "[1,null]".len() as i64);
    assert_eq!(r.get("copy"), Some(&list));

    let mut r = Record::of(&[("other", Value::Int(1))]);
    f.apply(&mut r);
    assert_eq!(int(&r, "len"), -1);
    assert_eq!(keys(&r), ["other", "len"]);
}

#[test]
fn field_set_replaces_in_place_appends_and_refuses_bad_json() {
    let f = load("field_set.wat");
    let mut r = typical();
    assert_eq!(f.apply(&mut r), Verdict::Keep);
    assert_eq!(
        keys(&r),
        [
            "name",
            "msg",
            "levelno",
            "levelname",
            "env",
            "tags",
            "bad_rc"
        ]
    );
    assert_eq!(r.get("env"), Some(&Value::str("prod")));
    assert_eq!(r.get("levelno"), Some(&Value::Int(40)));
    assert_eq!(
        r.get("tags"),
        Some(&Value::List(Arc::new(vec![Value::str("a"), Value::Int(1)])))
    );
    assert_eq!(int(&r, "bad_rc"), -1);
    assert_eq!(r.get("bad"), None);
}

#[test]
fn field_remove_removes_and_reports_absent() {
    let f = load("field_remove.wat");
    let mut r = Record::of(&[
        ("a", Value::Int(1)),
        ("secret", Value::str("x")),
        ("b", Value::Int(2)),
    ]);
    f.apply(&mut r);
    assert_eq!(keys(&r), ["a", "b", "removed_rc", "absent_rc"]);
    assert_eq!(int(&r, "removed_rc"), 0);
    assert_eq!(int(&r, "absent_rc"), -1);
}

#[test]
fn record_get_and_record_set() {
    let f = load("record.wat");
    let mut r = Record::of(&[("msg", Value::str("hi")), ("n", Value::Int(2))]);
    f.apply(&mut r);
    let json = br#"{"msg":"hi","n":2}"#;
    assert_eq!(int(&r, "need"), json.len() as i64);
    // A non-object is refused and leaves the record unchanged.
    assert_eq!(int(&r, "rc_array"), -1);
    let snapshot = Value::Dict(Arc::new(vec![
        (Value::str("msg"), Value::str("hi")),
        (Value::str("n"), Value::Int(2)),
    ]));
    assert_eq!(r.get("snapshot"), Some(&snapshot));
    assert_eq!(keys(&r), ["msg", "n", "need", "rc_array", "snapshot"]);

    let mut r = Record::of(&[("replace", Value::Bool(true)), ("x", Value::Int(1))]);
    f.apply(&mut r);
    assert_eq!(keys(&r), ["msg", "n", "rc_object"]);
    assert_eq!(r.get("msg"), Some(&Value::str("replaced")));
    assert_eq!(int(&r, "rc_object"), 0);
}

/// Issue 17: a field the decoder defaulted stops being a default when a
/// filter sets it (`field_set`, or `record_set` with another value), and
/// stays one when `record_set` writes back the value it had, so
/// `encoding: json` writes what the sender or a filter gave.
#[test]
fn a_default_a_filter_sets_becomes_the_records_own() {
    let bit = |k: &str| crate::record::default_bit(k);
    let set = load("field_set.wat");
    let mut r = typical();
    r.defaulted = bit("levelno") | bit("name");
    set.apply(&mut r);
    assert_eq!(r.defaulted, bit("name"));

    let record = load("record.wat");
    // record_set('{"msg":"replaced","n":1}'): msg changed, so it is set.
    let mut r = Record::of(&[("replace", Value::Bool(true)), ("msg", Value::str(""))]);
    r.defaulted = bit("msg");
    record.apply(&mut r);
    assert_eq!(r.get("msg"), Some(&Value::str("replaced")));
    assert_eq!(r.defaulted, 0);
    // The same value written back: still the decoder's default.
    let mut r = Record::of(&[
        ("replace", Value::Bool(true)),
        ("msg", Value::str("replaced")),
    ]);
    r.defaulted = bit("msg");
    record.apply(&mut r);
    assert_eq!(r.defaulted, bit("msg"));
}

#[test]
fn config_get_hands_the_filter_its_config() {
    let mut c = config("config.wat");
    c.config = serde_json::json!({"env": "prod", "n": [1, 2]});
    let f = WasmFilter::load("t", &c).unwrap();
    let mut r = Record::of(&[]);
    f.apply(&mut r);
    let text = br#"{"env":"prod","n":[1,2]}"#;
    assert_eq!(int(&r, "config_need"), text.len() as i64);
    assert_eq!(
        r.get("config"),
        Some(&Value::Dict(Arc::new(vec![
            (Value::str("env"), Value::str("prod")),
            (
                Value::str("n"),
                Value::List(Arc::new(vec![Value::Int(1), Value::Int(2)]))
            ),
        ])))
    );
}

#[test]
fn log_is_accepted_and_rate_limited() {
    let f = load("log.wat");
    for _ in 0..100 {
        assert_eq!(f.apply(&mut typical()), Verdict::Keep);
    }
    assert_eq!(f.errors(), 0);
    let limit = RateLimit::new(2);
    assert_eq!(limit.check(), Some(0));
    assert_eq!(limit.check(), Some(0));
    assert_eq!(limit.check(), None);
    assert_eq!(limit.check(), None);
}

#[test]
fn instances_are_reused_and_init_runs_once_per_instance() {
    let f = load("counter.wat");
    for n in 101..105 {
        let mut r = Record::of(&[]);
        f.apply(&mut r);
        assert_eq!(int(&r, "n"), n);
    }
}

#[test]
fn many_threads_share_one_filter() {
    let f = load("counter.wat");
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..200 {
                    let mut r = Record::of(&[]);
                    assert_eq!(f.apply(&mut r), Verdict::Keep);
                    assert!(int(&r, "n") > 100);
                }
            });
        }
    });
    assert_eq!((f.calls(), f.errors()), (800, 0));
    assert!(f.lock_pool().len() <= 4);
}

/// Run `do` on misbehave.wat under `c`, then check the filter still works.
fn contained(mut c: WasmFilterConfig, action: &str, on_error: OnError) {
    c.on_error = on_error;
    let f = WasmFilter::load("t", &c).unwrap();
    let mut r = Record::of(&[("do", Value::str(action)), ("msg", Value::str("m"))]);
    let before = r.clone();
    let verdict = f.apply(&mut r);
    let expected = match on_error {
        OnError::Pass => Verdict::Keep,
        OnError::Drop => Verdict::Drop,
    };
    assert_eq!(verdict, expected, "do={action}");
    // Whatever the guest changed before failing is undone.
    assert_eq!(r, before, "do={action}");
    assert_eq!(f.errors(), 1, "do={action}");
    // The failed instance was thrown away and a fresh one serves the next
    // record.
    let mut ok = Record::of(&[]);
    assert_eq!(f.apply(&mut ok), Verdict::Keep, "do={action}");
    assert_eq!(ok.get("ok"), Some(&Value::Int(1)), "do={action}");
    assert_eq!(f.errors(), 1);
}

#[test]
fn endless_loop_is_contained_by_timeout_with_both_policies() {
    let mut c = config("misbehave.wat");
    c.timeout_ms = Some(50);
    for p in [OnError::Pass, OnError::Drop] {
        let t = std::time::Instant::now();
        contained(c.clone(), "l", p);
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }
}

#[test]
fn endless_loop_is_contained_by_fuel_with_both_policies() {
    let mut c = config("misbehave.wat");
    c.fuel = Some(100_000);
    for p in [OnError::Pass, OnError::Drop] {
        contained(c.clone(), "l", p);
        contained(c.clone(), "B", p);
    }
}

#[test]
fn default_timeout_stops_an_endless_loop() {
    contained(config("misbehave.wat"), "l", OnError::Drop);
}

#[test]
fn memory_bomb_trap_bad_pointer_and_stack_overflow_are_contained() {
    for action in ["b", "B", "t", "p", "s"] {
        for p in [OnError::Pass, OnError::Drop] {
            let mut c = config("misbehave.wat");
            c.timeout_ms = Some(200);
            c.max_memory_bytes = Some(1 << 20);
            contained(c, action, p);
        }
    }
}

#[test]
fn memory_grow_past_the_cap_returns_minus_one() {
    let f = load("misbehave.wat");
    let mut r = Record::of(&[("do", Value::str("g"))]);
    assert_eq!(f.apply(&mut r), Verdict::Keep);
    assert_eq!(int(&r, "grow"), -1);
    let mut c = config("misbehave.wat");
    c.max_memory_bytes = Some(128 << 20);
    let f = WasmFilter::load("t", &c).unwrap();
    let mut r = Record::of(&[("do", Value::str("g"))]);
    f.apply(&mut r);
    assert_eq!(int(&r, "grow"), 0);
}

#[test]
fn a_bad_return_value_is_an_error_but_keeps_the_instance() {
    let mut c = config("misbehave.wat");
    c.on_error = OnError::Drop;
    let f = WasmFilter::load("t", &c).unwrap();
    let mut r = Record::of(&[("do", Value::str("r"))]);
    assert_eq!(f.apply(&mut r), Verdict::Drop);
    assert_eq!((f.errors(), f.dropped()), (1, 1));
}

#[test]
fn load_errors_name_the_problem() {
    let e = load_err(&config("bad_import.wat"));
    assert!(
        e.contains("imports `env.now`, which logrelay does not offer"),
        "{e}"
    );
    let e = load_err(&config("unknown_function.wat"));
    assert!(e.contains("`logrelay.http_get`"), "{e}");
    let e = load_err(&config("bad_signature.wat"));
    assert!(
        e.contains("imports `logrelay.field_get` with the wrong type; expected (i32, i32, i32, i32) -> i32"),
        "{e}"
    );
    let e = load_err(&config("no_filter.wat"));
    assert!(
        e.contains("must export a function `filter: () -> i32`"),
        "{e}"
    );
    let e = load_err(&config("no_memory.wat"));
    assert!(
        e.contains("must export its linear memory as `memory`"),
        "{e}"
    );
    let e = load_err(&config("init_refuse.wat"));
    assert!(e.contains("init() returned 3"), "{e}");
    let e = load_err(&config("init_trap.wat"));
    assert!(
        e.contains("failed to start: wasm trap: wasm `unreachable`"),
        "{e}"
    );
    let e = load_err(&config("big_memory.wat"));
    assert!(e.contains("failed to start: memory minimum size of 512 pages exceeds memory limits (max_memory_bytes is 16777216)"), "{e}");
    let e = load_err(&config("syntax_error.wat"));
    assert!(
        e.contains("syntax_error.wat is not a valid WebAssembly module"),
        "{e}"
    );
    assert!(e.contains("syntax_error.wat:5:1"), "{e}");
    let e = load_err(&config("missing.wat"));
    assert!(
        e.contains("cannot read") && e.contains("missing.wat"),
        "{e}"
    );
}

/// An example plugin from plugins/, as built by plugins/build.sh.
fn plugin(name: &str, config: serde_json::Value) -> Result<WasmFilter, FilterError> {
    let mut c = WasmFilterConfig {
        path: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("plugins")
            .join(name)
            .join(format!("{name}.wasm")),
        ..self::config("noop.wat")
    };
    c.config = config;
    WasmFilter::load(name, &c)
}

fn log_record(name: &str, levelno: i64, msg: &str) -> Record {
    Record::of(&[
        ("name", Value::str(name)),
        ("msg", Value::str(msg)),
        ("levelno", Value::Int(levelno)),
        ("exc_text", Value::None),
    ])
}

#[test]
fn example_level_filter_applies_per_logger_thresholds() {
    let f = plugin(
        "level",
        serde_json::json!({"min_level": "WARNING", "loggers": {"payments": "DEBUG", "payments.audit": 50}}),
    )
    .unwrap();
    let cases = [
        ("app", 20, Verdict::Drop),
        ("app", 30, Verdict::Keep),
        ("payments", 10, Verdict::Keep),
        ("payments.api", 10, Verdict::Keep),
        ("paymentsx", 20, Verdict::Drop),
        ("payments.audit.x", 40, Verdict::Drop),
        ("payments.audit", 50, Verdict::Keep),
    ];
    for (name, level, verdict) in cases {
        assert_eq!(
            f.apply(&mut log_record(name, level, "m")),
            verdict,
            "{name} {level}"
        );
    }
    assert_eq!(f.errors(), 0);
    let e = plugin("level", serde_json::json!({"min_level": "LOUD"}))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("filter level: the plugin's init() returned 1"),
        "{e}"
    );
}

#[test]
fn example_redact_masks_cards_emails_and_tokens() {
    let f = plugin("redact", serde_json::Value::Null).unwrap();
    let mut r = log_record(
        "app",
        20,
        "paid with 4111 1111 1111 1111 by jane@example.com, Authorization: Bearer abc.DEF-123",
    );
    r.set(
        "exc_text",
        Value::str("Traceback...\nValueError: 5500-0055-5555-5559"),
    );
    assert_eq!(f.apply(&mut r), Verdict::Keep);
    assert_eq!(
        r.get("msg"),
        Some(&Value::str(
            "paid with **** **** **** 1111 by [email], Authorization: Bearer [token]"
        ))
    );
    assert_eq!(
        r.get("exc_text"),
        Some(&Value::str("Traceback...\nValueError: ****-****-****-5559"))
    );
    // Nothing secret: the record is untouched (exc_text stays None).
    let mut clean = log_record("app", 20, "order 1234 shipped");
    f.apply(&mut clean);
    assert_eq!(clean, log_record("app", 20, "order 1234 shipped"));
}

#[test]
fn example_sample_keeps_one_in_n_per_logger() {
    let f = plugin(
        "sample",
        serde_json::json!({"n": 3, "always_keep_level": "ERROR"}),
    )
    .unwrap();
    let verdicts: Vec<Verdict> = (0..7)
        .map(|_| f.apply(&mut log_record("a", 20, "m")))
        .collect();
    use Verdict::{Drop as D, Keep as K};
    assert_eq!(verdicts, [K, D, D, K, D, D, K]);
    assert_eq!(f.apply(&mut log_record("b", 20, "m")), K);
    assert_eq!(f.apply(&mut log_record("a", 40, "m")), K);
    assert_eq!(f.apply(&mut log_record("a", 20, "m")), D);
}

#[test]
fn example_enrich_adds_config_fields_without_overwriting() {
    let f = plugin(
        "enrich",
        serde_json::json!({"fields": {"hostname": "web-1", "env": "prod", "shard": 7}}),
    )
    .unwrap();
    let mut r = log_record("app", 20, "m");
    r.set("env", Value::str("staging"));
    f.apply(&mut r);
    assert_eq!(r.get("hostname"), Some(&Value::str("web-1")));
    assert_eq!(r.get("env"), Some(&Value::str("staging")));
    assert_eq!(r.get("shard"), Some(&Value::Int(7)));
    let e = plugin("enrich", serde_json::json!({}))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("init() returned 1"), "{e}");
}

#[test]
fn a_module_reads_the_record_only_through_field_get_or_record_get() {
    // Nothing is decoded for a filter that cannot read it; one that can
    // read any field by a name it computes gets every field.
    for (name, reads) in [
        ("noop.wat", false),
        ("drop_all.wat", false),
        ("field_set.wat", false),
        ("counter.wat", false),
        ("log.wat", false),
        ("field_get.wat", true),
        ("field_remove.wat", true),
        ("record.wat", true),
    ] {
        let f = load(name);
        assert_eq!(f.reads_record(), reads, "{name}");
        let filter = crate::filter::Filter::Wasm(f);
        let keep = filter.reads();
        assert_eq!(keep.keeps_name("funcName"), reads, "{name}");
        assert_eq!(keep.keeps_name("request_id"), reads, "{name}");
    }
}

#[test]
fn a_module_that_can_change_the_record_drops_its_frame() {
    // A record decoded with its frame keeps it through a filter that
    // cannot write, and loses it through one that can (even when this
    // call changed nothing): the pickle encoder must not send the bytes
    // of a record they no longer describe.
    let mut frame = Vec::new();
    crate::codec::encode::pickle(&typical().fields, &mut frame);
    let frame = bytes::Bytes::from(frame);
    for (name, writes) in [
        ("noop.wat", false),
        ("drop_all.wat", false),
        ("log.wat", false),
        ("counter.wat", true),
        ("field_get.wat", true),
        ("field_set.wat", true),
        ("field_remove.wat", true),
        ("record.wat", true),
    ] {
        assert_eq!(load(name).writes_record(), writes, "{name}");
        let f = crate::filter::Filter::Wasm(load(name));
        assert_eq!(f.writes(), writes, "{name}");
        let mut r = crate::codec::DecoderKind::Pickle
            .decode_keeping(frame.clone(), crate::codec::Keep::FRAME)
            .unwrap();
        assert_eq!(r.frame(), Some(&frame), "{name}");
        f.apply(&mut r);
        assert_eq!(r.frame().is_none(), writes, "{name}");
    }
}

#[test]
fn a_batch_shares_one_instance_and_a_trap_costs_only_its_record() {
    // retain(): records before and after a trapping one are filtered as
    // apply() would; the trapped instance is replaced mid-batch, and the
    // one left at the end goes back to the pool.
    let mut c = config("misbehave.wat");
    c.on_error = OnError::Drop;
    let f = WasmFilter::load("t", &c).unwrap();
    let mut batch = vec![
        Record::of(&[("msg", Value::str("a"))]),
        Record::of(&[("do", Value::str("t")), ("msg", Value::str("b"))]),
        Record::of(&[("msg", Value::str("c"))]),
        Record::of(&[("do", Value::str("r")), ("msg", Value::str("d"))]),
        Record::of(&[("msg", Value::str("e"))]),
    ];
    f.retain(&mut batch);
    let kept: Vec<_> = batch.iter().map(|r| r.get("msg").cloned()).collect();
    assert_eq!(kept, ["a", "c", "e"].map(|m| Some(Value::str(m))));
    assert!(batch.iter().all(|r| r.get("ok") == Some(&Value::Int(1))));
    assert_eq!((f.calls(), f.errors(), f.dropped()), (5, 2, 2));
    assert_eq!(f.lock_pool().len(), 1);
}
