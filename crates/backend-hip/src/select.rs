//! Token selection on the device ([`Backend::select_tokens`]): soft-capping,
//! penalties and the pick run where the logits are; one `u32` per row is
//! copied back.

use crate::{dev_err, shape, HipBackend, HipTensor};
use backend_core::{BackendError, Result, SelectMode, TokenSelect, MAX_DEVICE_TOP_K};
use gpu_runtime::DeviceBuffer;
use hip_kernels::SampleParams;

impl HipBackend {
    /// See [`backend_core::Backend::select_tokens`].
    pub(crate) fn select_on_device(
        &self,
        logits: &mut HipTensor,
        select: &[TokenSelect],
    ) -> Result<Vec<u32>> {
        let rows = logits.rows;
        if rows == 0 && select.is_empty() {
            return Ok(Vec::new());
        }
        let mut scratch = self.id_buffers(rows)?;
        let Some((out, arg)) = scratch.as_mut() else {
            return Err(BackendError::Device("id scratch missing".into()));
        };
        let greedy_rows = self.launch_select(logits, select, out, arg)?;
        let mut ids = vec![0u32; rows];
        if greedy_rows.is_empty() {
            out.copy_prefix_to_host(&self.stream, &mut ids)
                .map_err(dev_err)?;
            return Ok(ids);
        }
        let mut greedy = vec![0u32; rows];
        arg.copy_prefix_to_host(&self.stream, &mut greedy)
            .map_err(dev_err)?;
        if greedy_rows.len() == rows {
            return Ok(greedy);
        }
        out.copy_prefix_to_host(&self.stream, &mut ids)
            .map_err(dev_err)?;
        for r in greedy_rows {
            ids[r] = greedy[r];
        }
        Ok(ids)
    }

    /// The backend's id buffers (sampled ids, argmax ids), grown to `rows`.
    pub(crate) fn id_buffers(
        &self,
        rows: usize,
    ) -> Result<std::sync::MutexGuard<'_, Option<IdBuffers>>> {
        let mut scratch = self.id_scratch.lock().unwrap_or_else(|p| p.into_inner());
        if scratch.as_ref().is_none_or(|(o, _)| o.len() < rows) {
            *scratch = None;
            *scratch = Some((
                DeviceBuffer::<u32>::alloc(&self.device, rows.max(1)).map_err(dev_err)?,
                DeviceBuffer::<u32>::alloc(&self.device, rows.max(1)).map_err(dev_err)?,
            ));
        }
        Ok(scratch)
    }

    /// The selection kernels of `select` over the rows of `logits`:
    /// soft-capping, penalties, sampled rows' ids into `out`, one argmax
    /// over every row into `arg`; nothing is read back. Returns the greedy
    /// rows (whose ids are `arg`'s; the others' are `out`'s).
    pub(crate) fn launch_select(
        &self,
        logits: &mut HipTensor,
        select: &[TokenSelect],
        out: &mut DeviceBuffer<u32>,
        arg: &mut DeviceBuffer<u32>,
    ) -> Result<Vec<usize>> {
        let (rows, cols) = (logits.rows, logits.cols);
        if select.len() != rows {
            return Err(shape(
                "select_tokens",
                format!("{} selections for {rows} rows", select.len()),
            ));
        }
        if rows == 0 {
            return Ok(Vec::new());
        }
        if out.len() < rows || arg.len() < rows {
            return Err(BackendError::Device(format!(
                "id buffers of {} / {} for {rows} rows",
                out.len(),
                arg.len()
            )));
        }
        if cols == 0 {
            return Err(shape("select_tokens", "rows of 0 columns".into()));
        }
        // The cap is the model's: one pass over all rows.
        if let Some(cap) = select[0].softcap {
            if select.iter().any(|s| s.softcap != Some(cap)) {
                return Err(shape(
                    "select_tokens",
                    "rows ask for different soft-capping".into(),
                ));
            }
            self.kernels
                .softcap(&self.stream, &mut logits.buf, cap)
                .map_err(dev_err)?;
        }
        // `out` is written by the sampling kernel for sampled rows only;
        // `arg` by the argmax of every row.
        let mut greedy_rows = Vec::new();
        for (row, s) in select.iter().enumerate() {
            if !s.penalties.is_empty() {
                let (ids, counts): (Vec<u32>, Vec<u32>) = s.penalties.iter().copied().unzip();
                let ids = DeviceBuffer::from_host(&self.stream, &ids).map_err(dev_err)?;
                let counts = DeviceBuffer::from_host(&self.stream, &counts).map_err(dev_err)?;
                self.kernels
                    .penalize(
                        &self.stream,
                        &mut logits.buf,
                        row,
                        cols,
                        &ids,
                        &counts,
                        s.repeat_penalty,
                        s.frequency_penalty,
                        s.presence_penalty,
                    )
                    .map_err(dev_err)?;
            }
            match s.mode {
                SelectMode::Greedy => greedy_rows.push(row),
                SelectMode::Sample(p) => {
                    if !(1..=MAX_DEVICE_TOP_K).contains(&p.top_k) {
                        return Err(BackendError::Unsupported(format!(
                            "sampling with top_k {} on the device (1..={MAX_DEVICE_TOP_K})",
                            p.top_k
                        )));
                    }
                    let p = SampleParams {
                        top_k: p.top_k,
                        top_p: p.top_p,
                        min_p: p.min_p,
                        temperature: p.temperature,
                        uniform: p.uniform,
                    };
                    self.kernels
                        .sample_topk(&self.stream, &logits.buf, row, cols, &p, out)
                        .map_err(dev_err)?;
                }
            }
        }
        if !greedy_rows.is_empty() {
            // Greedy rows: one argmax launch over every row.
            self.kernels
                .argmax(&self.stream, &logits.buf, cols, arg)
                .map_err(dev_err)?;
        }
        Ok(greedy_rows)
    }
}

/// The id buffers of token selection: sampled rows' ids, argmax ids.
pub(crate) type IdBuffers = (DeviceBuffer<u32>, DeviceBuffer<u32>);
