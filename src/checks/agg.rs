//! Aggregates of the fused row scan (see plan.rs, `fuse`). Two let `unique` and `relationships`
//! on integer keys ride along in the scan instead of taking a pass of their own:
//!
//! - `pgmart.duplicate_keys(bigint)`: sets each key's bit in a bitmap and counts the keys whose bit
//!   was set already (dense keys such as serial ids: no hashing, no sort); when the keys are too
//!   sparse for a bitmap it collects them and sorts once at the end. It reports rows, surplus rows
//!   (rows beyond the first of each key) and up to five duplicated keys;
//! - `pgmart.orphan_keys(bigint, bigint[])`: probes each key in the parent's keys (the second
//!   argument, an uncorrelated sub-select evaluated once), held as a bitmap when dense, else a hash
//!   set, and reports rows whose non-null key has no parent, with up to five of those keys.
//!
//! Two more keep the samples of row-level checks at the cost of `min`: `pgmart.smallest_keys(bigint
//! | tid)`, the five smallest failing keys, and `pgmart.smallest_values(text)`, the five smallest
//! failing values.
//!
//! Both are parallel safe (combine, serialize and deserialize functions), so the one scan keeps its
//! parallel workers. They are plain V1 C functions declared in sql/finalize.sql: no per-row
//! conversion layer. State lives in Rust memory owned by the aggregate's memory context (freed by
//! a reset callback, so an error mid-scan leaks nothing); growth is fallible and reported as an
//! ERROR, never an abort. The pure parts (sorting, sampling, hashing) are unit tested below.

use pgrx::prelude::*;
use pgrx::{pg_getarg, pg_getarg_datum, IntoDatum, JsonB, PgMemoryContexts};
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// Keys kept as a sample.
const SAMPLE: usize = 5;

/// A hasher for i64 keys: murmur3's 64-bit finalizer (one multiply-xorshift chain, well mixed
/// in every bit, which hashbrown's control bytes need).
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8)) ^ u64::from(*b);
        }
    }
    fn write_i64(&mut self, i: i64) {
        self.0 = i as u64;
    }
}

pub type KeySet = HashSet<i64, BuildHasherDefault<KeyHasher>>;

/// Keep the `SAMPLE` smallest distinct keys of `sample` plus `key`, sorted.
pub fn add_to_sample<T: Ord>(sample: &mut Vec<T>, key: T) {
    if sample.len() == SAMPLE && key >= sample[SAMPLE - 1] {
        return;
    }
    if let Err(pos) = sample.binary_search(&key) {
        sample.insert(pos, key);
        sample.truncate(SAMPLE);
    }
}

/// Bitmaps up to this many bits (1 MB) are always allowed; beyond it, 64 bits per key seen.
const MIN_BITMAP_BITS: i128 = 1 << 23;

fn bitmap_limit(keys: i64) -> i128 {
    (keys as i128 * 64).max(MIN_BITMAP_BITS)
}

/// Why a bitmap could not take a key.
#[derive(Debug, PartialEq)]
pub enum NoRoom {
    /// Covering the key would take more than the limit's bits: the keys are too sparse.
    TooSparse,
    OutOfMemory,
}

/// A set of i64 keys as a bitmap over `[lo, lo + 64 * words.len())`: one bit per possible key,
/// so dense keys (serial ids, which is what most keys are) are tested and set in a nanosecond,
/// without hashing or sorting.
#[derive(Debug, Default, Clone)]
pub struct KeyBits {
    lo: i64,
    words: Vec<u64>,
}

impl KeyBits {
    fn hi(&self) -> i128 {
        self.lo as i128 + self.words.len() as i128 * 64
    }

    fn offset(&self, k: i64) -> Option<usize> {
        let d = k as i128 - self.lo as i128;
        (d >= 0 && d < self.words.len() as i128 * 64).then_some(d as usize)
    }

    pub fn contains(&self, k: i64) -> bool {
        self.offset(k).map(|o| self.words[o / 64] >> (o % 64) & 1 == 1).unwrap_or(false)
    }

    /// Add `k`; whether it was there already. Grows (geometrically) up to `limit` bits in all.
    pub fn insert(&mut self, k: i64, limit: i128) -> std::result::Result<bool, NoRoom> {
        let o = match self.offset(k) {
            Some(o) => o,
            None => {
                self.cover(k as i128, k as i128 + 1, limit)?;
                self.offset(k).expect("covered")
            }
        };
        let (w, m) = (&mut self.words[o / 64], 1u64 << (o % 64));
        let was = *w & m != 0;
        *w |= m;
        Ok(was)
    }

    /// Grow to cover `[from, to)` within `limit` bits.
    fn cover(&mut self, from: i128, to: i128, limit: i128) -> std::result::Result<(), NoRoom> {
        let (from, to) = (from.div_euclid(64) * 64, (to + 63).div_euclid(64) * 64);
        let (lo, hi) = if self.words.is_empty() { (from, to) } else { (self.lo as i128, self.hi()) };
        let (mut new_lo, mut new_hi) = (lo.min(from), hi.max(to));
        if new_hi - new_lo > limit {
            return Err(NoRoom::TooSparse);
        }
        // Room to grow into in the same direction, so a scan in key order grows log(n) times.
        let extra = (hi - lo).min(limit - (new_hi - new_lo));
        if from < lo {
            new_lo = (new_lo - extra).max(i64::MIN as i128);
        } else if to > hi {
            new_hi = (new_hi + extra).min(i64::MAX as i128 + 1);
        }
        let mut words = Vec::new();
        words.try_reserve_exact(((new_hi - new_lo) / 64) as usize).map_err(|_| NoRoom::OutOfMemory)?;
        words.resize(((new_hi - new_lo) / 64) as usize, 0);
        if !self.words.is_empty() {
            let at = ((lo - new_lo) / 64) as usize;
            words[at..at + self.words.len()].copy_from_slice(&self.words);
        }
        self.lo = new_lo as i64;
        self.words = words;
        Ok(())
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The keys, ascending.
    pub fn keys(&self) -> impl Iterator<Item = i64> + '_ {
        self.words.iter().enumerate().flat_map(move |(i, &w)| {
            let base = self.lo as i128 + i as i128 * 64;
            BitIter(w).map(move |b| (base + b as i128) as i64)
        })
    }

    /// OR `other` into this bitmap; calls `dup` with each key in both. Err if it cannot cover it.
    pub fn union(&mut self, other: &KeyBits, limit: i128, mut dup: impl FnMut(i64)) -> std::result::Result<(), NoRoom> {
        if other.words.is_empty() {
            return Ok(());
        }
        self.cover(other.lo as i128, other.hi(), limit)?;
        let at = ((other.lo as i128 - self.lo as i128) / 64) as usize;
        for (i, &w) in other.words.iter().enumerate() {
            let mine = &mut self.words[at + i];
            let both = *mine & w;
            if both != 0 {
                let base = other.lo as i128 + i as i128 * 64;
                for b in BitIter(both) {
                    dup((base + b as i128) as i64);
                }
            }
            *mine |= w;
        }
        Ok(())
    }

    fn to_vec(&self) -> Vec<i64> {
        let mut v = vec![self.lo, self.words.len() as i64];
        v.extend(self.words.iter().map(|w| *w as i64));
        v
    }

    fn from_slice(v: &[i64]) -> KeyBits {
        let n = v[1] as usize;
        KeyBits { lo: v[0], words: v[2..2 + n].iter().map(|w| *w as u64).collect() }
    }
}

/// The set bits of a word, lowest first.
struct BitIter(u64);

impl Iterator for BitIter {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.0 == 0 {
            return None;
        }
        let b = self.0.trailing_zeros();
        self.0 &= self.0 - 1;
        Some(b)
    }
}

#[derive(Debug)]
enum KeyStore {
    Bits(KeyBits),
    /// Keys too sparse for a bitmap: every key from then on (plus the bitmap's), sorted at the end.
    List(Vec<i64>),
}

impl Default for KeyStore {
    fn default() -> Self {
        KeyStore::Bits(KeyBits::default())
    }
}

/// State of `duplicate_keys`: counts so far and the keys seen.
#[derive(Debug, Default)]
pub struct Duplicates {
    rows: i64,
    surplus: i64,
    sample: Vec<i64>,
    store: KeyStore,
}

fn push_all(v: &mut Vec<i64>, n: usize, keys: impl Iterator<Item = i64>) -> std::result::Result<(), NoRoom> {
    v.try_reserve(n).map_err(|_| NoRoom::OutOfMemory)?;
    v.extend(keys);
    Ok(())
}

impl Duplicates {
    pub fn add(&mut self, k: i64) -> std::result::Result<(), NoRoom> {
        self.rows += 1;
        if let KeyStore::Bits(b) = &mut self.store {
            match b.insert(k, bitmap_limit(self.rows)) {
                Ok(true) => {
                    self.surplus += 1;
                    add_to_sample(&mut self.sample, k);
                    return Ok(());
                }
                Ok(false) => return Ok(()),
                Err(NoRoom::TooSparse) => {
                    self.to_list()?;
                }
                Err(e) => return Err(e),
            }
        }
        let KeyStore::List(v) = &mut self.store else { unreachable!() };
        if v.len() == v.capacity() {
            v.try_reserve(v.len().max(1024)).map_err(|_| NoRoom::OutOfMemory)?;
        }
        v.push(k);
        Ok(())
    }

    fn to_list(&mut self) -> std::result::Result<&mut Vec<i64>, NoRoom> {
        if let KeyStore::Bits(b) = &self.store {
            let mut v = Vec::new();
            push_all(&mut v, b.len(), b.keys())?;
            self.store = KeyStore::List(v);
        }
        match &mut self.store {
            KeyStore::List(v) => Ok(v),
            KeyStore::Bits(_) => unreachable!(),
        }
    }

    /// Fold a partial state (from a parallel worker) into this one.
    pub fn merge(&mut self, other: Duplicates) -> std::result::Result<(), NoRoom> {
        self.rows += other.rows;
        self.surplus += other.surplus;
        for k in &other.sample {
            add_to_sample(&mut self.sample, *k);
        }
        let limit = bitmap_limit(self.rows);
        if let (KeyStore::Bits(a), KeyStore::Bits(b)) = (&mut self.store, &other.store) {
            let (mut n, mut sample) = (0, std::mem::take(&mut self.sample));
            let r = a.union(b, limit, |k| {
                n += 1;
                add_to_sample(&mut sample, k);
            });
            self.sample = sample;
            match r {
                Ok(()) => {
                    self.surplus += n;
                    return Ok(());
                }
                Err(NoRoom::TooSparse) => {}
                Err(e) => return Err(e),
            }
        }
        let v = self.to_list()?;
        match other.store {
            KeyStore::List(o) => push_all(v, o.len(), o.into_iter()),
            KeyStore::Bits(b) => push_all(v, b.len(), b.keys()),
        }
    }

    /// (rows, surplus rows, up to five smallest duplicated keys); sorts a list store once.
    pub fn summary(&mut self) -> (i64, i64, Vec<i64>) {
        let (mut surplus, mut sample) = (self.surplus, self.sample.clone());
        if let KeyStore::List(v) = &mut self.store {
            // Stable sort: merges the ascending runs a scan in key order leaves, in linear time.
            v.sort();
            for i in 1..v.len() {
                if v[i] == v[i - 1] {
                    surplus += 1;
                    add_to_sample(&mut sample, v[i]);
                }
            }
        }
        (self.rows, surplus, sample)
    }

    fn to_vec(&self) -> Vec<i64> {
        let mut v = vec![self.rows, self.surplus, self.sample.len() as i64];
        v.extend_from_slice(&self.sample);
        match &self.store {
            KeyStore::Bits(b) => {
                v.push(0);
                v.extend(b.to_vec());
            }
            KeyStore::List(l) => {
                v.push(1);
                v.extend_from_slice(l);
            }
        }
        v
    }

    fn from_slice(v: &[i64]) -> Duplicates {
        let n = v[2] as usize;
        let sample = v[3..3 + n].to_vec();
        let rest = &v[3 + n..];
        let store = if rest[0] == 0 { KeyStore::Bits(KeyBits::from_slice(&rest[1..])) } else { KeyStore::List(rest[1..].to_vec()) };
        Duplicates { rows: v[0], surplus: v[1], sample, store }
    }
}

/// The parent's keys of `orphan_keys`.
#[derive(Debug)]
pub enum ParentKeys {
    Bits(KeyBits),
    Hash(KeySet),
}

impl Default for ParentKeys {
    fn default() -> Self {
        ParentKeys::Bits(KeyBits::default())
    }
}

impl ParentKeys {
    /// A bitmap when the keys are dense enough (at most 64 bits per key), else a hash set.
    pub fn new(keys: &[i64]) -> std::result::Result<ParentKeys, NoRoom> {
        let (Some(lo), Some(hi)) = (keys.iter().min(), keys.iter().max()) else { return Ok(ParentKeys::default()) };
        let limit = bitmap_limit(keys.len() as i64);
        if (*hi as i128 - *lo as i128 + 128) <= limit {
            let mut b = KeyBits::default();
            b.cover(*lo as i128, *hi as i128 + 1, limit)?;
            for k in keys {
                b.insert(*k, limit)?;
            }
            return Ok(ParentKeys::Bits(b));
        }
        let mut set = KeySet::default();
        set.try_reserve(keys.len()).map_err(|_| NoRoom::OutOfMemory)?;
        set.extend(keys.iter().copied());
        Ok(ParentKeys::Hash(set))
    }

    #[inline]
    pub fn contains(&self, k: i64) -> bool {
        match self {
            ParentKeys::Bits(b) => b.contains(k),
            ParentKeys::Hash(h) => h.contains(&k),
        }
    }
}

#[derive(Default)]
struct Orphans {
    parent: ParentKeys,
    rows: i64,
    failing: i64,
    sample: Vec<i64>,
}

/// State of `smallest_keys`: the five smallest distinct keys seen; `TID`: the keys are ctids
/// (encoded as block << 16 | offset, which keeps their order) and are shown as ctids. `repr(C)`:
/// both forms have one layout, since the tid aggregate's final function reads the state its
/// transition function made as `Smallest<false>`.
#[derive(Default)]
#[repr(C)]
struct Smallest<const TID: bool> {
    sample: Vec<i64>,
}

/// State of `smallest_values(text)`: the five smallest distinct values seen, in byte order.
#[derive(Default)]
struct SmallestTexts {
    sample: Vec<String>,
}

impl SmallestTexts {
    fn add(&mut self, v: &str) {
        // Most calls end here once five are kept: one comparison, no allocation.
        if self.sample.len() == SAMPLE && v >= self.sample[SAMPLE - 1].as_str() {
            return;
        }
        add_to_sample(&mut self.sample, v.to_string());
    }
}

/// A ctid as an ordered integer, and back.
fn tid_key(t: &pg_sys::ItemPointerData) -> i64 {
    let block = (u32::from(t.ip_blkid.bi_hi) << 16) | u32::from(t.ip_blkid.bi_lo);
    (i64::from(block) << 16) | i64::from(t.ip_posid)
}

fn tid_text(k: i64) -> String {
    format!("({},{})", k >> 16, k & 0xffff)
}

fn out_of_memory(what: &str, n: usize) -> ! {
    ereport!(
        PgLogLevel::ERROR,
        PgSqlErrorCode::ERRCODE_OUT_OF_MEMORY,
        format!("pgmart: out of memory collecting {n} keys for {what}"),
        "Run the check with a where_clause that limits the rows, or on a smaller table."
    );
    unreachable!()
}

/// The aggregate's memory context, or an ERROR if called as a plain function.
unsafe fn agg_context(fcinfo: pg_sys::FunctionCallInfo, name: &str) -> pg_sys::MemoryContext {
    let mut ctx: pg_sys::MemoryContext = std::ptr::null_mut();
    if unsafe { pg_sys::AggCheckCallContext(fcinfo, &mut ctx) } == 0 {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("pgmart: {name} called in a non-aggregate context")
        );
    }
    ctx
}

/// The state in argument `n`, made in `ctx` (dropped when `ctx` is reset) if it is NULL.
unsafe fn state<T: Default>(fcinfo: pg_sys::FunctionCallInfo, n: usize, ctx: pg_sys::MemoryContext) -> *mut T {
    match unsafe { pg_getarg_datum(fcinfo, n) } {
        Some(d) => d.cast_mut_ptr::<T>(),
        None => PgMemoryContexts::For(ctx).leak_and_drop_on_delete(T::default()),
    }
}

fn to_bytes(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn from_bytes(bytes: &[u8]) -> Vec<i64> {
    bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
}

macro_rules! v1 {
    ($finfo:ident) => {
        #[unsafe(no_mangle)]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }
    };
}

// ---- duplicate_keys(bigint) ----------------------------------------------------------------

fn or_raise<T>(r: std::result::Result<T, NoRoom>, what: &str, n: i64) -> T {
    r.unwrap_or_else(|_| out_of_memory(what, n as usize))
}

/// What the generic combine/serialize/deserialize/final functions need of a state.
trait AggState: Default + Sized {
    const NAME: &'static str;
    fn rows(&self) -> i64;
    /// Fold a partial state (from a parallel worker) into this one.
    fn merge(&mut self, other: Self) -> std::result::Result<(), NoRoom>;
    /// The state as bytes, for parallel workers to hand to the leader (and back).
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Self;
    fn result(&mut self) -> serde_json::Value;
}

impl AggState for Duplicates {
    const NAME: &'static str = "duplicate_keys";
    fn rows(&self) -> i64 {
        self.rows
    }
    fn merge(&mut self, other: Self) -> std::result::Result<(), NoRoom> {
        Duplicates::merge(self, other)
    }
    fn encode(&self) -> Vec<u8> {
        to_bytes(&self.to_vec())
    }
    fn decode(bytes: &[u8]) -> Self {
        Duplicates::from_slice(&from_bytes(bytes))
    }
    fn result(&mut self) -> serde_json::Value {
        let (rows, surplus, sample) = self.summary();
        serde_json::json!({ "rows": rows, "duplicates": surplus, "sample": sample })
    }
}

impl AggState for Orphans {
    const NAME: &'static str = "orphan_keys";
    fn rows(&self) -> i64 {
        self.rows
    }
    fn merge(&mut self, other: Self) -> std::result::Result<(), NoRoom> {
        self.rows += other.rows;
        self.failing += other.failing;
        for k in other.sample {
            add_to_sample(&mut self.sample, k);
        }
        Ok(())
    }
    /// Counts and sample (the parent keys stay behind).
    fn encode(&self) -> Vec<u8> {
        to_bytes(&[&[self.rows, self.failing][..], &self.sample].concat())
    }
    fn decode(bytes: &[u8]) -> Self {
        let v = from_bytes(bytes);
        Orphans { rows: v[0], failing: v[1], sample: v[2..].to_vec(), ..Default::default() }
    }
    fn result(&mut self) -> serde_json::Value {
        serde_json::json!({ "rows": self.rows, "orphans": self.failing, "sample": self.sample })
    }
}

impl<const TID: bool> AggState for Smallest<TID> {
    const NAME: &'static str = "smallest_keys";
    fn rows(&self) -> i64 {
        self.sample.len() as i64
    }
    fn merge(&mut self, other: Self) -> std::result::Result<(), NoRoom> {
        for k in other.sample {
            add_to_sample(&mut self.sample, k);
        }
        Ok(())
    }
    fn encode(&self) -> Vec<u8> {
        to_bytes(&self.sample)
    }
    fn decode(bytes: &[u8]) -> Self {
        Smallest { sample: from_bytes(bytes) }
    }
    fn result(&mut self) -> serde_json::Value {
        if TID {
            serde_json::json!(self.sample.iter().map(|k| tid_text(*k)).collect::<Vec<_>>())
        } else {
            serde_json::json!(self.sample)
        }
    }
}

impl AggState for SmallestTexts {
    const NAME: &'static str = "smallest_values";
    fn rows(&self) -> i64 {
        self.sample.len() as i64
    }
    fn merge(&mut self, other: Self) -> std::result::Result<(), NoRoom> {
        for v in &other.sample {
            self.add(v);
        }
        Ok(())
    }
    /// Each value as a 4-byte length and its bytes.
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![];
        for v in &self.sample {
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        out
    }
    fn decode(mut bytes: &[u8]) -> Self {
        let mut sample = vec![];
        while bytes.len() >= 4 {
            let n = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
            sample.push(String::from_utf8_lossy(&bytes[4..4 + n]).into_owned());
            bytes = &bytes[4 + n..];
        }
        SmallestTexts { sample }
    }
    fn result(&mut self) -> serde_json::Value {
        serde_json::json!(self.sample)
    }
}

/// `(internal, internal) -> internal`: fold the second state into the first.
unsafe fn combine<T: AggState>(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        let ctx = agg_context(fcinfo, T::NAME);
        let a = state::<T>(fcinfo, 0, ctx);
        if let Some(b) = pg_getarg_datum(fcinfo, 1) {
            let b = std::mem::take(&mut *b.cast_mut_ptr::<T>());
            let n = (*a).rows() + b.rows();
            or_raise((*a).merge(b), T::NAME, n);
        }
        pg_sys::Datum::from(a)
    }
}

/// `(internal) -> bytea`, strict: the state as 8-byte integers.
unsafe fn serialize<T: AggState>(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        agg_context(fcinfo, T::NAME);
        let s = &*pg_getarg_datum(fcinfo, 0).expect("strict").cast_mut_ptr::<T>();
        s.encode().into_datum().expect("bytea")
    }
}

/// `(bytea, internal) -> internal`, strict.
unsafe fn deserialize<T: AggState>(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        agg_context(fcinfo, T::NAME);
        let bytes = pg_getarg::<&[u8]>(fcinfo, 0).expect("strict");
        let s = T::decode(bytes);
        pg_sys::Datum::from(PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(s))
    }
}

/// `(internal) -> jsonb`; no rows at all gives the empty state's result, not NULL.
unsafe fn finish<T: AggState>(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        agg_context(fcinfo, T::NAME);
        let v = match pg_getarg_datum(fcinfo, 0) {
            Some(d) => (*d.cast_mut_ptr::<T>()).result(),
            None => T::default().result(),
        };
        JsonB(v).into_datum().expect("jsonb")
    }
}

/// Export `$f::<$t>` as the V1 C function `$name` (with its `pg_finfo_` record).
macro_rules! export {
    ($finfo:ident, $name:ident, $f:ident, $t:ty) => {
        v1!($finfo);
        #[pg_guard]
        #[unsafe(no_mangle)]
        pub unsafe extern "C-unwind" fn $name(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
            unsafe { $f::<$t>(fcinfo) }
        }
    };
}

export!(pg_finfo_pgmart_dup_combine, pgmart_dup_combine, combine, Duplicates);
export!(pg_finfo_pgmart_dup_serial, pgmart_dup_serial, serialize, Duplicates);
export!(pg_finfo_pgmart_dup_deserial, pgmart_dup_deserial, deserialize, Duplicates);
export!(pg_finfo_pgmart_dup_final, pgmart_dup_final, finish, Duplicates);
export!(pg_finfo_pgmart_orphan_combine, pgmart_orphan_combine, combine, Orphans);
export!(pg_finfo_pgmart_orphan_serial, pgmart_orphan_serial, serialize, Orphans);
export!(pg_finfo_pgmart_orphan_deserial, pgmart_orphan_deserial, deserialize, Orphans);
export!(pg_finfo_pgmart_orphan_final, pgmart_orphan_final, finish, Orphans);

// Both smallest_keys aggregates share one state layout, so one combine/serialize/deserialize.
export!(pg_finfo_pgmart_smallest_combine, pgmart_smallest_combine, combine, Smallest<false>);
export!(pg_finfo_pgmart_smallest_serial, pgmart_smallest_serial, serialize, Smallest<false>);
export!(pg_finfo_pgmart_smallest_deserial, pgmart_smallest_deserial, deserialize, Smallest<false>);
export!(pg_finfo_pgmart_smallest_final, pgmart_smallest_final, finish, Smallest<false>);
export!(pg_finfo_pgmart_smallest_tid_final, pgmart_smallest_tid_final, finish, Smallest<true>);

/// `smallest_keys`' transition `(internal, bigint | tid) -> internal`.
unsafe fn smallest_trans(fcinfo: pg_sys::FunctionCallInfo, key: impl Fn(pg_sys::Datum) -> i64) -> pg_sys::Datum {
    unsafe {
        let s = state::<Smallest<false>>(fcinfo, 0, agg_context(fcinfo, "smallest_keys"));
        if let Some(k) = pg_getarg_datum(fcinfo, 1) {
            add_to_sample(&mut (*s).sample, key(k));
        }
        pg_sys::Datum::from(s)
    }
}

v1!(pg_finfo_pgmart_smallest_trans);
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pgmart_smallest_trans(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe { smallest_trans(fcinfo, |d| d.value() as i64) }
}

v1!(pg_finfo_pgmart_smallest_tid_trans);
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pgmart_smallest_tid_trans(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe { smallest_trans(fcinfo, |d| tid_key(&*d.cast_mut_ptr::<pg_sys::ItemPointerData>())) }
}

export!(pg_finfo_pgmart_smallest_text_combine, pgmart_smallest_text_combine, combine, SmallestTexts);
export!(pg_finfo_pgmart_smallest_text_serial, pgmart_smallest_text_serial, serialize, SmallestTexts);
export!(pg_finfo_pgmart_smallest_text_deserial, pgmart_smallest_text_deserial, deserialize, SmallestTexts);
export!(pg_finfo_pgmart_smallest_text_final, pgmart_smallest_text_final, finish, SmallestTexts);

v1!(pg_finfo_pgmart_smallest_text_trans);
/// `smallest_values`' transition `(internal, text) -> internal`.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pgmart_smallest_text_trans(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        let s = state::<SmallestTexts>(fcinfo, 0, agg_context(fcinfo, SmallestTexts::NAME));
        if let Some(v) = pg_getarg::<&str>(fcinfo, 1) {
            (*s).add(v);
        }
        pg_sys::Datum::from(s)
    }
}

v1!(pg_finfo_pgmart_dup_trans);
/// `duplicate_keys`' transition `(internal, bigint) -> internal`: add the key (NULLs are not keys).
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pgmart_dup_trans(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        let ctx = agg_context(fcinfo, Duplicates::NAME);
        let s = state::<Duplicates>(fcinfo, 0, ctx);
        if let Some(k) = pg_getarg_datum(fcinfo, 1) {
            or_raise((*s).add(k.value() as i64), Duplicates::NAME, (*s).rows);
        }
        pg_sys::Datum::from(s)
    }
}

v1!(pg_finfo_pgmart_orphan_trans);
/// `orphan_keys`' transition `(internal, bigint, bigint[]) -> internal`: the parent keys
/// (argument 3) are loaded once, when the state is made; each non-null key not among them counts
/// as an orphan.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pgmart_orphan_trans(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        let ctx = agg_context(fcinfo, Orphans::NAME);
        let fresh = pg_getarg_datum(fcinfo, 0).is_none();
        let s = state::<Orphans>(fcinfo, 0, ctx);
        if fresh {
            if let Some(parent) = pg_getarg::<pgrx::Array<i64>>(fcinfo, 2) {
                let keys: Vec<i64> = parent.iter().flatten().collect();
                (*s).parent = or_raise(ParentKeys::new(&keys), Orphans::NAME, keys.len() as i64);
            }
        }
        if let Some(k) = pg_getarg_datum(fcinfo, 1) {
            let k = k.value() as i64;
            let s = &mut *s;
            s.rows += 1;
            if !s.parent.contains(k) {
                s.failing += 1;
                add_to_sample(&mut s.sample, k);
            }
        }
        pg_sys::Datum::from(s)
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    /// What duplicate_keys must report, computed the slow obvious way.
    fn expected(keys: &[i64]) -> (i64, i64, Vec<i64>) {
        let mut counts = std::collections::BTreeMap::new();
        for k in keys {
            *counts.entry(*k).or_insert(0i64) += 1;
        }
        let surplus = counts.values().map(|c| c - 1).sum();
        let sample = counts.iter().filter(|(_, c)| **c > 1).map(|(k, _)| *k).take(SAMPLE).collect();
        (keys.len() as i64, surplus, sample)
    }

    fn dups(keys: &[i64]) -> Duplicates {
        let mut d = Duplicates::default();
        for k in keys {
            d.add(*k).unwrap();
        }
        d
    }

    /// Split the keys over three "workers", round-trip each through serialization, and combine.
    fn parallel(keys: &[i64]) -> (i64, i64, Vec<i64>) {
        let mut leader = Duplicates::default();
        for part in keys.chunks(keys.len().div_ceil(3).max(1)) {
            let worker = dups(part);
            Duplicates::merge(&mut leader, AggState::decode(&AggState::encode(&worker))).unwrap();
        }
        leader.summary()
    }

    fn pseudo_random(n: usize, modulo: i64) -> Vec<i64> {
        let mut x = 88172645463325252u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x as i64).rem_euclid(modulo)
            })
            .collect()
    }

    #[test]
    fn duplicates_match_a_plain_count_in_bitmap_and_list_modes() {
        let serial_with_dups: Vec<i64> = (1..200_000).chain([7, 7, 150_000, 3]).collect();
        let descending: Vec<i64> = (0..100_000).rev().chain([50, 99_999]).collect();
        let sparse: Vec<i64> = pseudo_random(50_000, i64::MAX).into_iter().chain([42, 42, 1 << 62, 1 << 62]).collect();
        let extremes = vec![i64::MIN, i64::MAX, 0, i64::MIN, -1, i64::MAX];
        let dense_then_outlier: Vec<i64> = (0..10_000).chain([1 << 40, 5, 1 << 40]).collect();
        let narrow = pseudo_random(30_000, 1000);
        for keys in [vec![], vec![5], serial_with_dups, descending, sparse, extremes, dense_then_outlier, narrow] {
            let want = expected(&keys);
            assert_eq!(dups(&keys).summary(), want, "serial, {} keys", keys.len());
            assert_eq!(parallel(&keys), want, "parallel, {} keys", keys.len());
        }
        // Dense keys stay a bitmap (no list to sort); sparse ones switch to a list.
        assert!(matches!(dups(&(0..100_000).collect::<Vec<_>>()).store, KeyStore::Bits(_)));
        assert!(matches!(dups(&pseudo_random(1000, i64::MAX)).store, KeyStore::List(_)));
    }

    #[test]
    fn key_bits_cover_grow_and_refuse_sparse_keys() {
        let mut b = KeyBits::default();
        assert_eq!(b.insert(1000, 1 << 20), Ok(false));
        assert_eq!(b.insert(1000, 1 << 20), Ok(true));
        assert_eq!(b.insert(-5, 1 << 20), Ok(false));
        assert!(b.contains(-5) && b.contains(1000) && !b.contains(999) && !b.contains(i64::MAX));
        assert_eq!(b.insert(1 << 30, 1 << 20), Err(NoRoom::TooSparse));
        assert_eq!(b.keys().collect::<Vec<_>>(), vec![-5, 1000]);
        assert_eq!(b.len(), 2);
        let mut c = KeyBits::default();
        c.insert(1000, 1 << 20).unwrap();
        c.insert(70_000, 1 << 20).unwrap();
        let mut both = vec![];
        b.union(&c, 1 << 20, |k| both.push(k)).unwrap();
        assert_eq!(both, vec![1000]);
        assert_eq!(b.keys().collect::<Vec<_>>(), vec![-5, 1000, 70_000]);
    }

    #[test]
    fn parent_keys_are_a_bitmap_when_dense_and_a_hash_set_when_sparse() {
        let dense: Vec<i64> = (1..=200_000).collect();
        let p = ParentKeys::new(&dense).unwrap();
        assert!(matches!(p, ParentKeys::Bits(_)));
        assert!(p.contains(1) && p.contains(200_000) && !p.contains(0) && !p.contains(200_001) && !p.contains(i64::MIN));
        let sparse = vec![3, 1 << 50, -(1 << 50)];
        let p = ParentKeys::new(&sparse).unwrap();
        assert!(matches!(p, ParentKeys::Hash(_)));
        assert!(p.contains(1 << 50) && p.contains(3) && !p.contains(4));
        assert!(!ParentKeys::new(&[]).unwrap().contains(0));
    }

    #[test]
    fn ctids_encode_in_order_and_print_as_ctids() {
        let t = |block: u32, pos: u16| pg_sys::ItemPointerData {
            ip_blkid: pg_sys::BlockIdData { bi_hi: (block >> 16) as u16, bi_lo: block as u16 },
            ip_posid: pos,
        };
        assert!(tid_key(&t(0, 9)) < tid_key(&t(0, 10)) && tid_key(&t(0, 65535)) < tid_key(&t(1, 1)));
        assert_eq!(tid_text(tid_key(&t(0, 3))), "(0,3)");
        assert_eq!(tid_text(tid_key(&t(4_000_000_000, 7))), "(4000000000,7)");
    }

    #[test]
    fn text_samples_keep_five_smallest_and_round_trip() {
        let mut a = SmallestTexts::default();
        for v in ["pear", "apple", "fig", "apple", "kiwi", "date", "zebra", "ä"] {
            a.add(v);
        }
        assert_eq!(a.sample, vec!["apple", "date", "fig", "kiwi", "pear"]);
        let mut b = SmallestTexts::default();
        b.add("banana");
        b.add("");
        b.merge(SmallestTexts::decode(&a.encode())).unwrap();
        assert_eq!(b.sample, vec!["", "apple", "banana", "date", "fig"]);
    }

    #[test]
    fn sample_keeps_five_smallest_distinct() {
        let mut s = vec![];
        for k in [10, 4, 4, 8, 1, 12, 3, 2, 99] {
            add_to_sample(&mut s, k);
        }
        assert_eq!(s, vec![1, 2, 3, 4, 8]);
    }

    #[test]
    fn orphan_partials_merge_and_round_trip() {
        let a = Orphans { rows: 10, failing: 3, sample: vec![5, 9], ..Default::default() };
        let mut b = Orphans { rows: 1, failing: 1, sample: vec![7], ..Default::default() };
        AggState::merge(&mut b, Orphans::decode(&a.encode())).unwrap();
        assert_eq!((b.rows, b.failing, b.sample), (11, 4, vec![5, 7, 9]));
    }

    #[test]
    fn key_hasher_spreads_sequential_keys() {
        use std::hash::BuildHasher;
        let b = BuildHasherDefault::<KeyHasher>::default();
        let top: HashSet<u64> = (0i64..1000).map(|k| b.hash_one(k) >> 57).collect();
        assert!(top.len() > 100, "top 7 bits of sequential keys should vary");
    }
}
