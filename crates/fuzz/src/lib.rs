//! A small, deterministic mutation fuzzer for Tidegate's tests: every parser of outside data
//! (manifests, signature envelopes, certificates, CRLs, scanner reports, ARM responses, registry
//! headers and notifications) is run on thousands of mutated real-world inputs and must answer
//! `Ok` or `Err`, never panic.
//!
//! This crate is a dev-dependency only: no product binary links it.
//!
//! - Seeds are real inputs (the files under `shared/fixtures`, see [`fixture`] and
//!   [`fixtures`], or documents a test builds itself).
//! - Mutations ([`Mutator`]) are byte-level (bit flips, byte inserts and deletes, truncation,
//!   splicing two seeds, repeated chunks, dictionary tokens) and JSON-aware (a value replaced by
//!   one of another type, huge and negative numbers, deep nesting, very long strings, unicode,
//!   keys removed or renamed, values swapped within the document).
//! - [`Target::run`] feeds each seed, then `TIDEGATE_FUZZ_ITERATIONS` mutated inputs, to a check
//!   under [`std::panic::catch_unwind`]. A panic, or an `Err` the check returns for a violated
//!   property, fails the test with the panic location, the input (base64, shrunk) and the seed.
//! - The run is a function of the seed: `TIDEGATE_FUZZ_SEED=<seed>` repeats a failing run
//!   exactly. Without it the seed comes from the clock and is printed, so every run explores new
//!   inputs.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Number, Value};

/// Environment variable: mutated inputs per target (overrides each target's default).
pub const ITERATIONS_ENV: &str = "TIDEGATE_FUZZ_ITERATIONS";
/// Environment variable: the RNG seed (decimal or `0x` hex) of the run.
pub const SEED_ENV: &str = "TIDEGATE_FUZZ_SEED";
/// Environment variable: where the shared fixtures are (default `shared/fixtures` next to the
/// repository).
pub const FIXTURES_ENV: &str = "TIDEGATE_FIXTURES_DIR";

/// Largest input a mutation produces (longer ones are cut).
pub const MAX_INPUT: usize = 256 * 1024;
/// How many more inputs a target runs by default in a release build than in a debug one.
pub const RELEASE_FACTOR: u64 = 10;
/// Distinct failures collected before a run stops.
const MAX_FAILURES: usize = 8;
/// Attempts to shrink a failing input.
const SHRINK_ATTEMPTS: usize = 4000;

/// SplitMix64: small, fast, and the same sequence on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    /// True once in `n` times on average.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// One of `items`, or `None` when it is empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() { None } else { items.get(self.below(items.len())) }
    }
}

/// Byte strings that often matter to parsers of Tidegate's inputs.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"1e999",
    b"-0.0",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"\xef\xbb\xbf",
    b"\xc3\xa9",
    b"\xff",
    b"\xf0\x9f\x98\x80",
    b"\xe2\x80\xae",
    b"sha256:",
    b"@",
    b"/",
    b"//",
    b"..",
    b"<",
    b">",
    b";",
    b"=",
    b"rel=\"next\"",
    b"%",
    b"\r\n",
    b"\x00",
    b"-----BEGIN CERTIFICATE-----\n",
    b"-----END CERTIFICATE-----\n",
    b"\x30\x82\xff\xff",
    b"\x30\x80",
    b"\x02\x81\x00",
    b"\x06\x03\x55\x1d\x1f",
    b"=",
    b"T",
    b"Z",
    b"+99:99",
    b"9999-12-31T23:59:59Z",
];

/// Numbers that often break arithmetic and conversions.
fn interesting_number(rng: &mut Rng) -> Value {
    let text = *rng
        .pick(&[
            "0",
            "-1",
            "1",
            "255",
            "256",
            "65536",
            "2147483647",
            "2147483648",
            "4294967295",
            "4294967296",
            "9007199254740993",
            "9223372036854775807",
            "-9223372036854775808",
            "18446744073709551615",
            "1.5",
            "-0.0",
            "1e308",
            "-1e308",
            "5e-324",
        ])
        .unwrap_or(&"0");
    serde_json::from_str::<Number>(text).map(Value::Number).unwrap_or(Value::Null)
}

/// Strings that often break text handling.
fn interesting_string(rng: &mut Rng) -> String {
    match rng.below(12) {
        0 => String::new(),
        1 => "A".repeat(1 + rng.below(100_000)),
        2 => "\u{0}".into(),
        3 => "\u{202e}gnp.exe".into(),
        4 => "😀".repeat(1 + rng.below(50)),
        5 => "e\u{301}\u{301}\u{301}".into(),
        6 => "\u{feff}\u{ffff}\u{10ffff}".into(),
        7 => "sha256:".to_string() + &"a".repeat(rng.below(130)),
        8 => "../../../../etc/passwd".into(),
        9 => "9999-99-99T99:99:99Z".into(),
        10 => "%00%ff%".into(),
        _ => "-".repeat(1 + rng.below(300)),
    }
}

/// Mutates inputs, byte-wise or as JSON.
pub struct Mutator<'s> {
    /// The random source; generators may draw from it too.
    pub rng: Rng,
    seeds: &'s [Vec<u8>],
}

impl<'s> Mutator<'s> {
    /// A mutator over `seeds` (used for splicing) drawing from `rng`.
    pub fn new(rng: Rng, seeds: &'s [Vec<u8>]) -> Self {
        Self { rng, seeds }
    }

    /// One of the seeds (empty when there are none).
    pub fn seed(&mut self) -> &'s [u8] {
        let seeds: &'s [Vec<u8>] = self.seeds;
        seeds.get(self.rng.below(seeds.len())).map(Vec::as_slice).unwrap_or_default()
    }

    /// One to four stacked mutations of `input`, a third of them JSON-aware when it is JSON.
    pub fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut data = input.to_vec();
        for _ in 0..1 + self.rng.below(4) {
            data = if self.rng.one_in(3) {
                match self.json(&data) {
                    Some(mutated) => mutated,
                    None => self.bytes(data),
                }
            } else {
                self.bytes(data)
            };
        }
        data.truncate(MAX_INPUT);
        data
    }

    /// One byte-level mutation.
    pub fn bytes(&mut self, mut data: Vec<u8>) -> Vec<u8> {
        let len = data.len();
        let at = self.rng.below(len + 1);
        match self.rng.below(11) {
            0 if len > 0 => {
                let i = self.rng.below(len);
                data[i] ^= 1 << self.rng.below(8);
            }
            1 if len > 0 => {
                let i = self.rng.below(len);
                data[i] = *self.rng.pick(&[0u8, 1, 0x7f, 0x80, 0xff, b'"', b'\\', b'0', b'9', b'{']).unwrap_or(&0);
            }
            2 => {
                let n = 1 + self.rng.below(8);
                let random: Vec<u8> = (0..n).map(|_| self.rng.next_u64() as u8).collect();
                data.splice(at..at, random);
            }
            3 => {
                let token = *self.rng.pick(TOKENS).unwrap_or(&&b""[..]);
                data.splice(at..at, token.iter().copied());
            }
            4 if len > 0 => {
                let n = 1 + self.rng.below((len - at.min(len)).clamp(1, 64));
                let end = (at + n).min(len);
                data.drain(at.min(len)..end);
            }
            5 if len > 0 => {
                let start = self.rng.below(len);
                let end = (start + 1 + self.rng.below(64)).min(len);
                let chunk = data[start..end].to_vec();
                data.splice(at..at, chunk);
            }
            6 => data.truncate(at),
            7 => {
                let other = self.seed();
                let from = self.rng.below(other.len() + 1);
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            8 if len > 0 => {
                let start = self.rng.below(len);
                let end = (start + 1 + self.rng.below(16)).min(len);
                let chunk = data[start..end].to_vec();
                let times = 1 + self.rng.below(1000);
                let repeated: Vec<u8> = chunk.iter().copied().cycle().take(chunk.len() * times).collect();
                data.splice(at..at, repeated);
            }
            9 => {
                // A run of digits: numbers too long for any integer type.
                let digits: Vec<u8> = (0..1 + self.rng.below(40)).map(|_| b'0' + self.rng.below(10) as u8).collect();
                data.splice(at..at, digits);
            }
            _ => {
                // Replace a byte with the one that closes or opens a structure.
                if len > 0 {
                    let i = self.rng.below(len);
                    data[i] = *self.rng.pick(b"{}[]\",:<>=;/@").unwrap_or(&b'"');
                }
            }
        }
        data.truncate(MAX_INPUT);
        data
    }

    /// A byte-level mutation of a string, read back lossily as UTF-8.
    pub fn string(&mut self, text: &str) -> String {
        String::from_utf8_lossy(&self.bytes(text.as_bytes().to_vec())).into_owned()
    }

    /// One JSON-aware mutation of `data`, or `None` when it is not JSON.
    pub fn json(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let mut value: Value = serde_json::from_slice(data).ok()?;
        self.value(&mut value);
        let mut out = serde_json::to_vec(&value).ok()?;
        if self.rng.one_in(4) {
            // Deep nesting past every recursion limit, written as text.
            let depth = 1 + self.rng.below(300);
            let mut nested = b"[".repeat(depth);
            nested.append(&mut out);
            nested.extend(b"]".repeat(depth));
            out = nested;
        }
        Some(out)
    }

    /// One mutation of one node of `value`, in place.
    pub fn value(&mut self, value: &mut Value) {
        let mut strings = Vec::new();
        let mut keys = Vec::new();
        harvest(value, &mut strings, &mut keys);
        let mut index = self.rng.below(count(value));
        let Some(node) = nth_mut(value, &mut index) else { return };
        match self.rng.below(12) {
            0 => {
                *node = match self.rng.below(6) {
                    0 => Value::Null,
                    1 => Value::Bool(self.rng.one_in(2)),
                    2 => interesting_number(&mut self.rng),
                    3 => Value::String(interesting_string(&mut self.rng)),
                    4 => Value::Array(vec![node.take()]),
                    _ => Value::Object(Map::new()),
                }
            }
            1 => *node = interesting_number(&mut self.rng),
            2 => *node = Value::String(interesting_string(&mut self.rng)),
            3 => {
                let mut nested = node.take();
                for _ in 0..1 + self.rng.below(200) {
                    nested = if self.rng.one_in(2) {
                        Value::Array(vec![nested])
                    } else {
                        Value::Object(Map::from_iter([("a".to_string(), nested)]))
                    };
                }
                *node = nested;
            }
            4 => {
                if let Some(other) = self.rng.pick(&strings) {
                    *node = Value::String(other.clone());
                }
            }
            5 | 6 => match node {
                Value::String(text) => *text = self.string(text),
                Value::Number(n) => {
                    let text = self.string(&n.to_string());
                    *node = serde_json::from_str(&text).unwrap_or(Value::String(text));
                }
                Value::Bool(b) => *b = !*b,
                Value::Null => *node = Value::String(interesting_string(&mut self.rng)),
                Value::Array(items) => {
                    if !items.is_empty() {
                        let i = self.rng.below(items.len());
                        items.remove(i);
                    }
                }
                Value::Object(map) => {
                    let key = map.keys().nth(self.rng.below(map.len().max(1))).cloned();
                    if let Some(key) = key {
                        map.remove(&key);
                    }
                }
            },
            7 => match node {
                Value::Array(items) if !items.is_empty() => {
                    let item = items[self.rng.below(items.len())].clone();
                    let most = if self.rng.one_in(4) { 500 } else { 3 };
                    for _ in 0..1 + self.rng.below(most) {
                        items.push(item.clone());
                    }
                }
                Value::Object(map) => {
                    let key = self.rng.pick(&keys).cloned().unwrap_or_else(|| interesting_string(&mut self.rng));
                    let value = match self.rng.pick(&strings) {
                        Some(s) if self.rng.one_in(2) => Value::String(s.clone()),
                        _ => interesting_number(&mut self.rng),
                    };
                    map.insert(key, value);
                }
                _ => *node = Value::Array(Vec::new()),
            },
            8 => {
                if let Value::Object(map) = node {
                    let old = map.keys().nth(self.rng.below(map.len().max(1))).cloned();
                    if let Some(old) = old
                        && let Some(moved) = map.remove(&old)
                    {
                        let new = match self.rng.pick(&keys) {
                            Some(k) if self.rng.one_in(2) => k.clone(),
                            _ => self.string(&old),
                        };
                        map.insert(new, moved);
                    }
                }
            }
            9 => match node {
                Value::Array(items) => items.clear(),
                Value::Object(map) => map.clear(),
                _ => *node = Value::Null,
            },
            10 => {
                if let Value::Array(items) = node {
                    items.reverse();
                } else if let Value::String(text) = node {
                    text.push_str(&interesting_string(&mut self.rng));
                }
            }
            _ => {
                // A value of the same document in another place.
                let mut index = self.rng.below(count(value));
                let donor = nth_mut(value, &mut index).map(|v| v.clone()).unwrap_or(Value::Null);
                let mut index = self.rng.below(count(value));
                if let Some(node) = nth_mut(value, &mut index) {
                    *node = donor;
                }
            }
        }
    }
}

fn count(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count).sum(),
        Value::Object(map) => map.values().map(count).sum(),
        _ => 0,
    }
}

fn nth_mut<'a>(value: &'a mut Value, n: &mut usize) -> Option<&'a mut Value> {
    if *n == 0 {
        return Some(value);
    }
    *n -= 1;
    match value {
        Value::Array(items) => items.iter_mut().find_map(|item| nth_mut(item, n)),
        Value::Object(map) => map.values_mut().find_map(|item| nth_mut(item, n)),
        _ => None,
    }
}

fn harvest(value: &Value, strings: &mut Vec<String>, keys: &mut Vec<String>) {
    match value {
        Value::String(s) if strings.len() < 256 => strings.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| harvest(v, strings, keys)),
        Value::Object(map) => {
            for (k, v) in map {
                if keys.len() < 256 {
                    keys.push(k.clone());
                }
                harvest(v, strings, keys);
            }
        }
        _ => {}
    }
}

/// The bytes as text, invalid UTF-8 replaced (for parsers that take `&str`).
pub fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// The shared fixtures directory: `TIDEGATE_FIXTURES_DIR`, or `shared/fixtures` beside the
/// repository.
pub fn fixtures_dir() -> PathBuf {
    // `cargo test` names the running test's package directory (`crates/<name>`, as deep as this
    // crate's) at run time; the compile-time one is only a fallback, as a build reused from a
    // checkout at another path would name that path.
    match std::env::var_os(FIXTURES_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf())
            .join("../../../shared/fixtures"),
    }
}

/// The bytes of the fixture at `path` (relative to [`fixtures_dir`]). Panics when it is
/// missing: a fuzz target without its seeds would test nothing.
pub fn fixture(path: &str) -> Vec<u8> {
    let full = fixtures_dir().join(path);
    std::fs::read(&full).unwrap_or_else(|e| {
        panic!("fuzz seed {} cannot be read ({e}); set {FIXTURES_ENV} to the shared fixtures directory", full.display())
    })
}

/// The bytes of every file in fixture directory `dir` whose name ends with `suffix`, in name
/// order. Panics when there is none.
pub fn fixtures(dir: &str, suffix: &str) -> Vec<Vec<u8>> {
    let full = fixtures_dir().join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&full)
        .unwrap_or_else(|e| {
            panic!(
                "fuzz seeds {} cannot be listed ({e}); set {FIXTURES_ENV} to the shared fixtures directory",
                full.display()
            )
        })
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(suffix))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fuzz seed *{suffix} in {}", full.display());
    paths.iter().map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).collect()
}

/// The iteration count `TIDEGATE_FUZZ_ITERATIONS` asks for, if any.
pub fn iterations_from_env() -> Option<u64> {
    let text = std::env::var(ITERATIONS_ENV).ok()?;
    let parsed = text.trim().replace('_', "").parse();
    Some(parsed.unwrap_or_else(|e| panic!("{ITERATIONS_ENV}={text:?} is not a count: {e}")))
}

/// The seed `TIDEGATE_FUZZ_SEED` asks for, else one from the clock.
pub fn seed_from_env() -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(text) => {
            let text = text.trim();
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("{SEED_ENV}={text:?} is not a number: {e}"))
        }
        Err(_) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            now.as_secs().wrapping_mul(1_000_000_007) ^ u64::from(now.subsec_nanos())
        }
    }
}

thread_local! {
    static IN_FUZZ: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that records panics of fuzzed inputs instead of printing them;
/// every other panic goes to the previous hook.
fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_FUZZ.with(Cell::get) {
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(non-string panic payload)".into());
                let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
                LAST_PANIC.with(|last| *last.borrow_mut() = Some(format!("{location}: {message}")));
            } else {
                previous(info);
            }
        }));
    });
}

/// How one input fared.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Fine,
    /// A panic (`file:line: message`).
    Panic(String),
    /// A property the check asserts did not hold (`label: details`; the label names the
    /// property, so failures with the same label count as one).
    Property(String),
}

impl Outcome {
    /// What identifies "the same bug": the panic location, or the property message's start.
    fn key(&self) -> String {
        match self {
            Self::Fine => String::new(),
            Self::Panic(text) => text.split(": ").next().unwrap_or_default().to_string(),
            Self::Property(text) => text.split(':').next().unwrap_or_default().chars().take(80).collect(),
        }
    }
}

fn run_one(check: &dyn Fn(&[u8]) -> Result<(), String>, input: &[u8]) -> Outcome {
    install_hook();
    IN_FUZZ.with(|f| f.set(true));
    LAST_PANIC.with(|last| last.borrow_mut().take());
    let result = panic::catch_unwind(AssertUnwindSafe(|| check(input)));
    IN_FUZZ.with(|f| f.set(false));
    match result {
        Ok(Ok(())) => Outcome::Fine,
        Ok(Err(property)) => Outcome::Property(property),
        Err(_) => Outcome::Panic(LAST_PANIC.with(|last| last.borrow_mut().take()).unwrap_or_else(|| "panic".into())),
    }
}

/// Removes chunks of a failing input while it fails the same way.
fn shrink(check: &dyn Fn(&[u8]) -> Result<(), String>, input: &[u8], key: &str) -> Vec<u8> {
    let mut best = input.to_vec();
    let mut attempts = 0;
    let mut chunk = best.len() / 2;
    while chunk > 0 && attempts < SHRINK_ATTEMPTS {
        let mut at = 0;
        let mut removed_any = false;
        while at < best.len() && attempts < SHRINK_ATTEMPTS {
            let end = (at + chunk).min(best.len());
            let mut candidate = best.clone();
            candidate.drain(at..end);
            attempts += 1;
            if run_one(check, &candidate).key() == key {
                best = candidate;
                removed_any = true;
            } else {
                at += chunk;
            }
        }
        if !removed_any {
            chunk /= 2;
        }
    }
    best
}

/// A failing input, as reported.
#[derive(Clone, Debug)]
struct Failure {
    outcome: Outcome,
    iteration: u64,
    input: Vec<u8>,
}

/// What a run did (printed to stderr; `cargo test -- --nocapture` shows it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The target's name.
    pub name: String,
    /// Inputs run: the seeds unchanged, then the mutated ones.
    pub inputs: u64,
    /// The RNG seed.
    pub seed: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

/// One fuzz target: a name and a default iteration count.
#[derive(Clone, Debug)]
pub struct Target {
    name: String,
    iterations: u64,
}

/// A fuzz target called `name`, with 2,000 mutated inputs unless told otherwise.
pub fn target(name: &str) -> Target {
    Target { name: name.to_string(), iterations: 2_000 }
}

impl Target {
    /// The mutated inputs run when `TIDEGATE_FUZZ_ITERATIONS` is not set, in a debug build
    /// (chosen so that the target runs in a second or two); a release build runs
    /// [`RELEASE_FACTOR`] times as many.
    pub fn iterations(mut self, debug_default: u64) -> Self {
        self.iterations = debug_default;
        self
    }

    fn default_iterations(&self) -> u64 {
        if cfg!(debug_assertions) { self.iterations } else { self.iterations.saturating_mul(RELEASE_FACTOR) }
    }

    /// Runs `check` on every seed, then on mutations of them ([`Mutator::mutate`]).
    pub fn run(self, seeds: &[Vec<u8>], check: impl Fn(&[u8]) -> Result<(), String>) -> Summary {
        self.run_with(
            seeds,
            |m| {
                let seed = m.seed();
                m.mutate(seed)
            },
            check,
        )
    }

    /// Runs `check` on every seed, then on inputs `generate` makes (for inputs that are
    /// structures of several encoded parts, such as signature envelopes).
    pub fn run_with(
        self,
        seeds: &[Vec<u8>],
        mut generate: impl FnMut(&mut Mutator<'_>) -> Vec<u8>,
        check: impl Fn(&[u8]) -> Result<(), String>,
    ) -> Summary {
        assert!(!seeds.is_empty(), "fuzz target {} has no seeds", self.name);
        let iterations = iterations_from_env().unwrap_or_else(|| self.default_iterations());
        let seed = seed_from_env();
        let started = Instant::now();
        let mut mutator = Mutator::new(Rng::new(seed), seeds);
        let mut failures: Vec<Failure> = Vec::new();
        let record = |failures: &mut Vec<Failure>, outcome: Outcome, iteration: u64, input: &[u8]| {
            if outcome != Outcome::Fine && !failures.iter().any(|f| f.outcome.key() == outcome.key()) {
                failures.push(Failure { outcome, iteration, input: input.to_vec() });
            }
        };
        for (i, input) in seeds.iter().enumerate() {
            record(&mut failures, run_one(&check, input), i as u64, input);
        }
        let mut inputs = seeds.len() as u64;
        for iteration in 0..iterations {
            if failures.len() >= MAX_FAILURES {
                break;
            }
            let input = generate(&mut mutator);
            record(&mut failures, run_one(&check, &input), seeds.len() as u64 + iteration, &input);
            inputs += 1;
        }
        let summary = Summary { name: self.name.clone(), inputs, seed, elapsed: started.elapsed() };
        eprintln!(
            "fuzz {}: {} inputs ({} seeds), seed {seed}, {:.2?}",
            summary.name,
            summary.inputs,
            seeds.len(),
            summary.elapsed
        );
        if !failures.is_empty() {
            let mut report = format!(
                "fuzz target {} failed on {} distinct input(s) (seed {seed}; repeat with {SEED_ENV}={seed} \
                 {ITERATIONS_ENV}={iterations}):\n",
                self.name,
                failures.len()
            );
            for failure in &failures {
                let key = failure.outcome.key();
                let small = shrink(&check, &failure.input, &key);
                let what = match &failure.outcome {
                    Outcome::Panic(text) => format!("panicked at {}", cut(text, 1000)),
                    Outcome::Property(text) => format!("property violated: {}", cut(text, 1000)),
                    Outcome::Fine => String::new(),
                };
                report.push_str(&format!(
                    "- input #{} {what}\n  input, shrunk to {} bytes (base64): {}\n",
                    failure.iteration,
                    small.len(),
                    encode_for_report(&self.name, failure.iteration, &small)
                ));
            }
            panic!("{report}");
        }
        summary
    }
}

/// At most `max` characters of `text`.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max { text.to_string() } else { text.chars().take(max).collect::<String>() + "…" }
}

/// The input as base64, or the path of a file holding it when it is long.
fn encode_for_report(name: &str, iteration: u64, input: &[u8]) -> String {
    if input.len() <= 8 * 1024 {
        return STANDARD.encode(input);
    }
    let path = std::env::temp_dir().join(format!("tidegate-fuzz-{name}-{iteration}.bin"));
    match std::fs::write(&path, input) {
        Ok(()) => format!("(too long to print; written to {})", path.display()),
        Err(e) => format!("(too long to print, and {} cannot be written: {e})", path.display()),
    }
}

/// Decodes the base64 of a reported input (for regression tests).
pub fn decode(base64: &str) -> Vec<u8> {
    STANDARD.decode(base64.trim()).unwrap_or_else(|e| panic!("not base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_a_function_of_its_seed() {
        let seeds = vec![br#"{"a": [1, "two", {"three": null}], "b": "sha256:00"}"#.to_vec(), b"plain text".to_vec()];
        let inputs = |seed| {
            let mut m = Mutator::new(Rng::new(seed), &seeds);
            (0..200)
                .map(|_| {
                    let s = m.seed();
                    m.mutate(s)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(inputs(7), inputs(7));
        assert_ne!(inputs(7), inputs(8));
        assert!(inputs(7).iter().any(|i| !seeds.contains(i)), "mutations change inputs");
    }

    #[test]
    fn json_mutations_keep_json_and_reach_every_kind() {
        let seed = br#"{"a": [1, "two", {"three": null}], "b": true}"#;
        let mut m = Mutator::new(Rng::new(1), &[]);
        let mut changed = 0;
        for _ in 0..500 {
            let out = m.json(seed).expect("json in, json out");
            let depth_prefix = out.iter().take_while(|&&b| b == b'[').count();
            let inner = &out[depth_prefix..out.len() - depth_prefix];
            if serde_json::from_slice::<Value>(inner).is_ok() && inner != seed {
                changed += 1;
            }
        }
        assert!(changed > 300, "{changed} of 500 JSON mutations changed the document");
        assert_eq!(m.json(b"not json"), None);
    }

    #[test]
    fn a_panicking_target_fails_with_the_shrunk_input_and_the_seed() {
        let seeds = vec![b"hello world".to_vec()];
        let result = panic::catch_unwind(|| {
            target("self-test").iterations(3_000).run(&seeds, |input| {
                assert!(!input.contains(&b'@'), "an @");
                Ok(())
            })
        });
        let message = result.expect_err("the target panics on some input");
        let text = message.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(text.contains("panicked at") && text.contains("an @"), "{text}");
        assert!(text.contains("TIDEGATE_FUZZ_SEED="), "{text}");
        assert!(text.contains("(base64): QA=="), "shrunk to the one byte that matters: {text}");
    }

    #[test]
    fn a_violated_property_fails_too() {
        let seeds = vec![b"12".to_vec()];
        let result = panic::catch_unwind(|| {
            target("property")
                .iterations(100)
                .run(&seeds, |input| if input.len() == 2 { Ok(()) } else { Err(format!("length {}", input.len())) })
        });
        assert!(result.is_err());
    }

    #[test]
    fn a_sound_target_passes() {
        let seeds = vec![b"{}".to_vec()];
        let summary = target("sound").iterations(500).run(&seeds, |input| {
            let _ = serde_json::from_slice::<Value>(input);
            Ok(())
        });
        let expected = iterations_from_env().unwrap_or(if cfg!(debug_assertions) { 500 } else { 500 * RELEASE_FACTOR });
        assert_eq!(summary.inputs, expected + 1);
    }
}
