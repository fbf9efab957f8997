//! Times RSA-2048 key generation, the cost every node pays in the pki flow (`gencsr`).
//! Usage: cargo run --release -p choria-pki --example rsa_keygen -- [KEYS]

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keys: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 20,
    };
    let mut times = Vec::with_capacity(keys);
    for _ in 0..keys {
        let started = Instant::now();
        choria_pki::generate_rsa_key_pem(2048)?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / keys.max(1) as f64;
    let median = times.get(keys / 2).copied().unwrap_or(0.0);
    println!("RSA-2048 key generation, {keys} keys: mean {mean:.0} ms, median {median:.0} ms");
    Ok(())
}
