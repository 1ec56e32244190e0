//! The serialisable state of a crossbar: its devices (`--out`, resumed
//! runs) and the positions of its random streams (continuation state).

use super::transfer::{TransferSnapshot, TransferStreams};
use super::Crossbar;
use crate::devices::array::{DeviceArrayState, NoiseRng};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The serialisable device state of a crossbar (`--out`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CrossbarState {
    /// Device model name.
    pub device_model: String,
    /// `n_out`, `n_in` (bias column not counted).
    pub shape: (usize, usize),
    /// All devices (pairs interleaved `G⁺, G⁻` for the differential mapping).
    pub devices: DeviceArrayState,
    /// Whether devices come in pairs.
    pub paired: bool,
    /// Mixed-precision accumulator (empty otherwise).
    pub accumulator: Vec<f32>,
    /// Fast array, hidden matrix, choppers and schedule of a Tiki-Taka layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<TransferSnapshot>,
}

/// The positions of a crossbar's random streams (its continuation state):
/// cycle-to-cycle and write noise, the controller's pulse trains, read and
/// output noise.
#[derive(Serialize, Deserialize)]
struct CrossbarContinuation {
    device_noise: NoiseRng,
    controller: rand_xoshiro::Xoshiro256PlusPlus,
    read_noise: NoiseRng,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    transfer: Option<TransferStreams>,
}

impl Crossbar {
    /// The device state as JSON ([`crate::substrate::WeightArray::device_state`]).
    pub(super) fn device_state_json(&self) -> Option<serde_json::Value> {
        let state = CrossbarState {
            device_model: self.model.name.clone(),
            shape: (self.n_out, self.n_in),
            devices: self.devices.state(),
            paired: self.paired,
            accumulator: self.controller.accumulator().to_vec(),
            transfer: match &self.transfer {
                Some(t) => Some(t.snapshot()?),
                None => None,
            },
        };
        // Through JSON text, not `to_value`: the text writes each `f32`
        // conductance as its shortest decimal (`0.4832252`), which reads
        // back to the same `f32`; `to_value` would widen it digit by digit.
        let text = serde_json::to_string(&state).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The random streams' positions as JSON.
    pub(super) fn continuation_state_json(&self) -> Option<serde_json::Value> {
        serde_json::to_value(CrossbarContinuation {
            device_noise: self.devices.noise_rng().clone(),
            controller: self.controller.rng().clone(),
            read_noise: self.read_rng.clone(),
            transfer: match &self.transfer {
                Some(t) => Some(t.streams()?),
                None => None,
            },
        })
        .ok()
    }

    /// Restores [`Crossbar::continuation_state_json`].
    pub(super) fn restore_continuation(&mut self, state: &serde_json::Value) -> Result<()> {
        let s: CrossbarContinuation = serde_json::from_value(state.clone())
            .context("crossbar continuation state: wrong format")?;
        self.devices.set_noise_rng(s.device_noise);
        self.controller.set_rng(s.controller);
        self.read_rng = s.read_noise;
        match (self.transfer.as_mut(), s.transfer) {
            (Some(t), Some(streams)) => t.restore_streams(streams)?,
            (None, None) => {}
            _ => bail!("crossbar continuation state: the algorithm differs (transfer streams present in one, not the other)"),
        }
        Ok(())
    }

    /// Restores [`Crossbar::device_state_json`].
    pub(super) fn restore_devices(&mut self, state: &serde_json::Value) -> Result<()> {
        let s: CrossbarState =
            serde_json::from_value(state.clone()).context("crossbar device state: wrong format")?;
        if s.shape != (self.n_out, self.n_in) || s.device_model != self.model.name {
            bail!(
                "crossbar device state is for a {}×{} '{}' array, this layer is {}×{} '{}'",
                s.shape.0,
                s.shape.1,
                s.device_model,
                self.n_out,
                self.n_in,
                self.model.name
            );
        }
        if s.paired != self.paired {
            bail!("crossbar device state: mapping differs (pair vs single device)");
        }
        self.devices.restore(&s.devices)?;
        self.controller.set_accumulator(&s.accumulator)?;
        match (self.transfer.as_mut(), &s.transfer) {
            (Some(t), Some(snapshot)) => t.restore(snapshot)?,
            (None, None) => {}
            _ => bail!(
                "crossbar device state: the algorithm differs (a fast array in one, not the other)"
            ),
        }
        self.refresh_cache();
        Ok(())
    }
}
