//! Weight upload: keep GPU-readable formats as stored, convert the rest.

use backend_core::{BackendError, GgmlType, Result, WeightView};
use gpu_runtime::{DeviceBuffer, Stream};
use hip_kernels::GpuFormat;

use crate::tensor::{oom, HipWeight};

fn dequantize(view: &WeightView<'_>) -> Result<Vec<f32>> {
    let n = view.cols() * view.rows();
    let mut out = vec![0f32; n];
    quant::dequantize(view.ggml_type, view.data, &mut out).map_err(|e| {
        BackendError::UnsupportedType {
            op: "load_weight",
            ggml_type: view.ggml_type,
            tensor: format!("{} ({e})", view.name),
        }
    })?;
    Ok(out)
}

/// Upload one weight (see the crate docs for the format rules).
pub(crate) fn load_weight(stream: &Stream, view: &WeightView<'_>) -> Result<HipWeight> {
    let expected = view
        .ggml_type
        .bytes_for((view.cols() * view.rows()) as u64)
        .map(|b| b as usize);
    if expected != Some(view.data.len()) {
        return Err(BackendError::Shape {
            op: "load_weight",
            detail: format!(
                "{}: {} bytes for dims {:?} of {}",
                view.name,
                view.data.len(),
                view.dims,
                view.ggml_type.name()
            ),
        });
    }
    let single_row = view.rows() == 1;
    let native =
        GpuFormat::from_ggml(view.ggml_type).filter(|f| f.row_bytes(view.cols()).is_some());
    let (format, bytes): (GpuFormat, std::borrow::Cow<'_, [u8]>) = match native {
        Some(f) => (f, view.data.into()),
        None => {
            let vals = dequantize(view)?;
            let halves: Vec<u8> = vals
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes())
                .collect();
            tracing::debug!(
                "{}: {} converted to f16 for the GPU",
                view.name,
                view.ggml_type.name()
            );
            (GpuFormat::F16, halves.into())
        }
    };
    let data = DeviceBuffer::from_host(stream, &bytes).map_err(|e| oom(e, bytes.len()))?;
    let vector = if single_row {
        let vals = if view.ggml_type == GgmlType::F32 {
            view.data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        } else {
            dequantize(view)?
        };
        Some(DeviceBuffer::from_host(stream, &vals).map_err(|e| oom(e, vals.len() * 4))?)
    } else {
        None
    };
    Ok(HipWeight {
        name: view.name.to_string(),
        dims: view.dims,
        file_type: view.ggml_type,
        format,
        data,
        vector,
    })
}
