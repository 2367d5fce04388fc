//! Runtime smoke tests on a real device: properties, memory, errors,
//! events, graphs and concurrent use of one device from several threads.
//! Without a usable GPU each test prints why it is skipped and returns.

use std::io::Write as _;
use std::sync::Arc;

use gpu_runtime::{Device, DeviceBuffer, Event, Graph, RuntimeError, Stream};

fn device() -> Option<Arc<Device>> {
    match gpu_runtime::probe(0) {
        Ok(d) => Some(d),
        Err(e) => {
            // Written to the real stderr so that the skip is visible.
            let _ = writeln!(std::io::stderr(), "SKIPPED (no usable GPU): {e}");
            None
        }
    }
}

#[test]
fn properties_are_sane() {
    let Some(d) = device() else { return };
    let p = d.props();
    let _ = writeln!(
        std::io::stderr(),
        "device: {} ({}), runtime {} ({}, driver {}), wave {}, {} CUs, {} MiB, {} threads/block, {} B shared",
        p.name,
        p.arch,
        d.runtime().vendor().name(),
        d.runtime().library_name(),
        d.runtime().driver_version(),
        p.wave_size,
        p.compute_units,
        p.total_memory >> 20,
        p.max_threads_per_block,
        p.shared_memory_per_block
    );
    assert!(!p.name.is_empty());
    assert!(
        p.arch.starts_with("sm_") || p.arch.starts_with("gfx"),
        "{}",
        p.arch
    );
    assert!(p.wave_size == 32 || p.wave_size == 64);
    assert!(p.compute_units > 0 && p.total_memory > 0);
    let (free, total) = d.mem_info().unwrap();
    assert!(free <= total && total > 0);
}

#[test]
fn memory_round_trip_fill_and_device_copy() {
    let Some(d) = device() else { return };
    let s = Stream::new(&d).unwrap();
    let data: Vec<u32> = (0..1_000_003).collect();
    let a = DeviceBuffer::from_host(&s, &data).unwrap();
    assert_eq!(a.to_host(&s).unwrap(), data);
    let mut b = DeviceBuffer::<u32>::zeroed(&s, data.len()).unwrap();
    assert!(b.to_host(&s).unwrap().iter().all(|&x| x == 0));
    b.copy_from_device(&s, 10, &a, 20, 100).unwrap();
    let h = b.to_host(&s).unwrap();
    assert_eq!(&h[10..110], &data[20..120]);
    assert_eq!(h[9], 0);
    assert_eq!(h[110], 0);
    // Out-of-range copies are refused before reaching the driver.
    assert!(b.copy_from_device(&s, data.len() - 5, &a, 0, 10).is_err());
    let mut short = vec![0u32; 3];
    assert!(a.copy_to_host(&s, &mut short).is_err());
}

#[test]
fn errors_carry_the_vendor_names() {
    let Some(d) = device() else { return };
    let total = d.props().total_memory;
    let err = DeviceBuffer::<u8>::alloc(&d, total * 4).unwrap_err();
    let _ = writeln!(std::io::stderr(), "oversized allocation: {err}");
    match &err {
        RuntimeError::Api {
            name, description, ..
        } => {
            assert!(name.contains("MEMORY") || name.contains("Memory"), "{name}");
            assert!(!description.is_empty());
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.is_out_of_memory());
    // A bad code object is an error, not a crash.
    assert!(gpu_runtime::Module::load(&d, b"not a code object").is_err());
}

#[test]
fn events_time_work() {
    let Some(d) = device() else { return };
    let s = Stream::new(&d).unwrap();
    let buf = DeviceBuffer::<f32>::alloc(&d, 64 << 20).unwrap();
    let (e0, e1) = (Event::new(&d).unwrap(), Event::new(&d).unwrap());
    e0.record(&s).unwrap();
    for _ in 0..10 {
        buf.fill_zero(&s).unwrap();
    }
    e1.record(&s).unwrap();
    e1.synchronize().unwrap();
    let ms = e1.elapsed_ms_since(&e0).unwrap();
    let gbps = 10.0 * buf.bytes() as f64 / (ms as f64 * 1e-3) / 1e9;
    let _ = writeln!(
        std::io::stderr(),
        "10 fills of 256 MiB: {ms:.3} ms ({gbps:.0} GB/s)"
    );
    assert!(ms > 0.0);
}

#[test]
fn graph_replays_captured_copies() {
    let Some(d) = device() else { return };
    let s = Stream::new(&d).unwrap();
    let src = DeviceBuffer::from_host(&s, &[1u32, 2, 3, 4]).unwrap();
    let mut dst = DeviceBuffer::<u32>::zeroed(&s, 8).unwrap();
    let dst_ptr: *mut DeviceBuffer<u32> = &mut dst;
    let graph = Graph::capture(&s, |st| {
        // SAFETY (test): `dst` is only used through this pointer inside the closure.
        let dst = unsafe { &mut *dst_ptr };
        dst.fill_zero(st)?;
        dst.copy_from_device(st, 2, &src, 0, 4)
    })
    .unwrap();
    // Nothing ran during capture.
    assert_eq!(dst.to_host(&s).unwrap(), vec![0; 8]);
    graph.launch(&s).unwrap();
    assert_eq!(dst.to_host(&s).unwrap(), vec![0, 0, 1, 2, 3, 4, 0, 0]);
    let mut src2 = src;
    src2.copy_from_host(&s, &[9, 9, 9, 9]).unwrap();
    graph.launch(&s).unwrap();
    assert_eq!(dst.to_host(&s).unwrap(), vec![0, 0, 9, 9, 9, 9, 0, 0]);
}

#[test]
fn many_threads_use_one_device_concurrently() {
    let Some(d) = device() else { return };
    std::thread::scope(|scope| {
        for t in 0..8u32 {
            let d = d.clone();
            scope.spawn(move || {
                // Each thread: its own stream; the device (and its one
                // primary context) is shared.
                let s = Stream::new(&d).unwrap();
                for i in 0..50u32 {
                    let data: Vec<u32> = (0..4096).map(|x| x ^ (t << 20) ^ (i << 12)).collect();
                    let a = DeviceBuffer::from_host(&s, &data).unwrap();
                    let mut b = DeviceBuffer::<u32>::alloc(&d, data.len()).unwrap();
                    b.copy_from_device(&s, 0, &a, 0, data.len()).unwrap();
                    assert_eq!(b.to_host(&s).unwrap(), data);
                    let _ = d.mem_info().unwrap();
                }
            });
        }
    });
}
