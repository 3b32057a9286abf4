//! `benches/pipeline.rs` with mimalloc as the global allocator instead of glibc's malloc, to
//! measure how much of the per-record cost is the allocator: `cargo bench --bench pipeline_mimalloc`.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "pipeline.rs"]
mod pipeline;

fn main() {
    pipeline::main();
}
