//! Micro-benchmark of the quantized matmul: best-of-N time per block-dot.
//! `RAYON_NUM_THREADS=1 cargo run --release -p reservoir-engine --example kernel_bench`
use reservoir_engine::gguf::Bytes;
use reservoir_engine::kernels::{Level, Weight};
use reservoir_engine::quant::{GgmlType, quantize};

fn main() {
    let (rows, cols) = (1536usize, 576usize);
    let wf: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    for ty in [GgmlType::Q4_1, GgmlType::Q8_0] {
        let Some(w) = Weight::new(ty, rows, cols, Bytes::from_vec(quantize(ty, &wf))) else { return };
        for t in [1usize, 4, 16, 64] {
            let x: Vec<f32> = (0..t * cols).map(|i| ((i * 31 % 97) as f32 / 48.0) - 1.0).collect();
            let mut out = vec![0f32; t * rows];
            let mut best = f64::MAX;
            for _ in 0..30 {
                let t0 = std::time::Instant::now();
                w.matmul_at(Level::best(), &x, t, &mut out);
                best = best.min(t0.elapsed().as_secs_f64());
            }
            let dots = (rows * t * cols / 32) as f64;
            println!("{ty:?} t={t:>2}: {:.2} ns/block-dot ({:.0} us)", best * 1e9 / dots, best * 1e6);
        }
    }
}
