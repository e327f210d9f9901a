use std::process::ExitCode;

/// jemalloc for Rust and C alike: librdkafka allocates every record it is given on the thread
/// that produces it and frees it on the thread that reports its delivery, and glibc's malloc
/// spends a tenth of a busy relay's CPU on such cross-thread pairs (docs/benchmarks.md,
/// *Allocator*). The unprefixed build replaces `malloc` and `free` for the C code too.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    hookrelay::cli::run()
}
