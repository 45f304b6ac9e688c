//! The per-request cost of turning an `x-api-key` header into a lookup digest: `parse` (shape,
//! alphabet, CRC-32 checksum) and, for a well-formed key, SHA-256. Run with
//! `cargo bench --bench key_parse`; the figures are recorded in docs/dev/performance.md.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use heffl_api::domain::api_key::{self, ApiKey, KeyEnv};

fn key_parse(c: &mut Criterion) {
    let env = KeyEnv::default();
    let valid = ApiKey::generate(&env).expose_secret().to_owned();
    // The last character is a checksum digit, so changing it breaks only the checksum: the
    // slowest way to be rejected, since every other rule passes first.
    let mut bad_checksum = valid.clone();
    let last = bad_checksum.pop().unwrap_or('0');
    bad_checksum.push(if last == 'A' { 'B' } else { 'A' });
    let mut with_space = valid.clone();
    with_space.replace_range(20..21, " ");

    assert!(api_key::parse(valid.as_bytes(), &env).is_ok());
    assert!(api_key::parse(bad_checksum.as_bytes(), &env).is_err());
    assert!(api_key::parse(with_space.as_bytes(), &env).is_err());

    let mut group = c.benchmark_group("key_parse");
    // What the key middleware does per request.
    group.bench_function("valid: parse + digest", |b| {
        b.iter(|| api_key::parse_digest(black_box(valid.as_bytes()), &env))
    });
    group.bench_function("valid: parse only", |b| {
        b.iter(|| api_key::parse(black_box(valid.as_bytes()), &env))
    });
    group.bench_function("bad checksum", |b| {
        b.iter(|| api_key::parse_digest(black_box(bad_checksum.as_bytes()), &env))
    });
    group.bench_function("malformed (space)", |b| {
        b.iter(|| api_key::parse_digest(black_box(with_space.as_bytes()), &env))
    });
    group.finish();
}

/// The argon2id verify a login pays (the crate's defaults, as `password.rs` uses), next to the
/// SHA-256 a key pays: docs/design.md's "Why SHA-256 for keys and argon2id for passwords" in numbers.
fn password_verify(c: &mut Criterion) {
    use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
    use argon2::{Argon2, PasswordVerifier};
    let salt = SaltString::generate(&mut OsRng);
    let stored = Argon2::default()
        .hash_password(b"correct horse battery staple", &salt)
        .map(|hash| hash.to_string())
        .unwrap_or_default();
    let mut group = c.benchmark_group("password");
    group.sample_size(10);
    group.bench_function("argon2id verify", |b| {
        b.iter(|| {
            let parsed = PasswordHash::new(&stored).ok();
            parsed.map(|hash| {
                Argon2::default()
                    .verify_password(black_box(b"correct horse battery staple"), &hash)
                    .is_ok()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, key_parse, password_verify);
criterion_main!(benches);
