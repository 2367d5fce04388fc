//! The shared backend test suite (`backend_cpu::testsuite`) run on the GPU
//! backend: every op against the suite's naive references. Without a usable
//! GPU each test prints why it is skipped (on the real stderr) and returns;
//! with a GPU whose backend fails to start, the tests fail.

use std::io::Write as _;

backend_cpu::backend_tests!(match backend_hip::probe(0) {
    Ok(_) => backend_hip::HipBackend::try_new(0).expect("a GPU is present but the backend failed"),
    Err(e) => {
        let _ = writeln!(std::io::stderr(), "SKIPPED (no usable GPU): {e}");
        return;
    }
});
