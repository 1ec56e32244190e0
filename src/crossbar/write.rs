//! Writes: the controller's plan (pulse events or exact analog changes)
//! applied to the devices, with the read caches kept up to date, and the
//! bookkeeping after a write (drift, one-sided refresh, device clock).

use super::cache::CacheUpdate;
use super::mapping::EntryTerms;
use super::Crossbar;
use crate::controller::{Controller, PulseEvent, WritePlan};
use crate::devices::array::EventTargets;
use crate::devices::DeviceArray;
use crate::substrate::OuterProductGradient;

impl Crossbar {
    /// One learning step for `grad` ([`crate::substrate::WeightArray::apply_gradient`]).
    pub(super) fn write(&mut self, grad: &OuterProductGradient) {
        self.generation += 1;
        self.ensure_cache();
        if let Some(mut transfer) = self.transfer.take() {
            // Tiki-Taka family: the gradient goes into the fast array, the
            // transfers pulse these devices (the slow array).
            transfer.update(self, grad);
            self.transfer = Some(transfer);
            self.after_write();
            return;
        }
        if self.controller.plans_per_sample() {
            self.apply_pipelined(grad);
            self.after_write();
            return;
        }
        match self.controller.plan(grad) {
            WritePlan::Analog(delta) => {
                let drifting = self.devices.drifts();
                if drifting {
                    // Drift invalidates the caches below; rebuilt on the next read.
                    self.line_conductance_valid = false;
                }
                let track_lines = self.line_conductance_valid;
                for (idx, &dw) in delta.iter().enumerate() {
                    if dw != 0.0 {
                        self.nudge_weight(idx, dw, track_lines);
                    }
                }
            }
            WritePlan::Pulses(events) => {
                let terms = self.write_terms();
                self.apply_events(&events, &terms);
                self.controller.recycle(events);
            }
        }
        self.after_write();
    }

    /// Changes weight `idx` by `dw` exactly (an analog write): both devices
    /// of a pair by `±dw/(2 w_scale)`, a single device by `dw/(2 w_scale)`;
    /// the read caches follow, and the line conductances if `track_lines`.
    pub(super) fn nudge_weight(&mut self, idx: usize, dw: f32, track_lines: bool) {
        let old = if track_lines {
            self.crosspoint_conductance_s(idx)
        } else {
            0.0
        };
        let dg = dw * (0.5 / self.config.w_scale);
        if self.paired {
            self.devices.nudge(2 * idx, dg);
            self.devices.nudge(2 * idx + 1, -dg);
        } else {
            self.devices.nudge(idx, dg);
        }
        self.refresh_entry(idx);
        if track_lines {
            let new = self.crosspoint_conductance_s(idx);
            self.add_line_conductance(idx, new - old);
        }
    }

    /// What a pulse write updates besides the devices (read caches and line
    /// conductances, unless drift makes reads depend on the clock).
    pub(super) fn write_terms(&self) -> EntryTerms {
        let drifting = self.devices.drifts();
        EntryTerms {
            refresh: !drifting,
            track_lines: !drifting && self.line_conductance_valid,
            ..EntryTerms::of(self)
        }
    }

    /// Applies pulse events in order ([`DeviceArray::apply_events`]), with
    /// the caches updated as `terms` asks ([`CacheUpdate`]).
    pub(super) fn apply_events(&mut self, events: &[PulseEvent], terms: &EntryTerms) {
        let targets = if self.paired {
            EventTargets::Pairs {
                one_sided: self.model.pairing.one_sided,
            }
        } else {
            EventTargets::Devices
        };
        let (devices, reference, caches) = self.write_parts();
        let mut update = CacheUpdate {
            terms: *terms,
            reference,
            caches,
        };
        devices.apply_events(events, targets, &mut update);
    }

    /// Per-sample stochastic writes. With more than one rayon thread and more
    /// than one group of samples, a two-stage pipeline: the controller
    /// samples the coincidences group by group and hands each group's events
    /// over a channel to the devices, which take them while the next group
    /// is sampled. Pulse trains are open-loop, so the events and their order
    /// — and hence the result, bit for bit — are those of planning the whole
    /// batch first (tested for 1 and 2 threads).
    pub(super) fn apply_pipelined(&mut self, grad: &OuterProductGradient) {
        const GROUP: usize = 4;
        let batch = grad.left.ncols();
        let mut controller = std::mem::replace(&mut self.controller, Controller::placeholder());
        controller.begin_update(grad);
        let terms = self.write_terms();
        if batch <= GROUP || rayon::current_num_threads() < 2 {
            // Nothing to overlap (or no core to overlap on): no hand-over cost.
            let mut events = std::mem::take(&mut self.event_buffer);
            events.clear();
            controller.plan_samples(grad, 0..batch, &mut events);
            self.apply_events(&events, &terms);
            self.event_buffer = events;
        } else {
            let (sender, receiver) = std::sync::mpsc::channel::<Vec<PulseEvent>>();
            let controller = &mut controller;
            rayon::join(
                move || {
                    for start in (0..batch).step_by(GROUP) {
                        let mut events = Vec::new();
                        controller.plan_samples(
                            grad,
                            start..(start + GROUP).min(batch),
                            &mut events,
                        );
                        if sender.send(events).is_err() {
                            break;
                        }
                    }
                    // Dropping the sender ends the applying loop.
                },
                || {
                    // Unbounded channel: if no other thread takes this half,
                    // it runs after the sampling half and drains the queue.
                    for events in receiver {
                        self.apply_events(&events, &terms);
                    }
                },
            );
        }
        self.controller = controller;
    }

    /// Bookkeeping after a write: drift invalidation, PCM refresh, clock.
    pub(super) fn after_write(&mut self) {
        if self.devices.drifts() {
            // Reads depend on the clock: rebuild everything on the next read.
            self.cache_valid = false;
            self.line_conductance_valid = false;
        }
        if self.model.pairing.one_sided && self.model.pairing.refresh_threshold > 0.0 {
            self.refresh_one_sided();
            self.cache_valid = false;
        }
        self.advance_clock(self.config.time_per_batch);
        // The update is over: its unused pooled noise draws go, so that the
        // saved stream position is the whole noise state (`--resume`).
        self.devices.end_write();
    }

    /// One-sided pairs: RESET both devices of a pair whose device passed the
    /// refresh threshold and re-program the weight with SET pulses
    /// (iterative program-and-verify on the programmed state).
    pub(super) fn refresh_one_sided(&mut self) {
        let thr = self.model.pairing.refresh_threshold;
        if !self.model.pairing.one_sided || thr <= 0.0 || !self.paired {
            return;
        }
        let step = self.model.nominal_step();
        let budget = (4.0 / step).ceil() as usize;
        let d = &mut self.devices;
        let position = |a: &DeviceArray, i: usize| {
            let (lo, hi) = a.bounds(i);
            (a.visible(i) - lo) / (hi - lo)
        };
        for pair in 0..d.len() / 2 {
            let (ip, im) = (2 * pair, 2 * pair + 1);
            if position(d, ip) <= thr && position(d, im) <= thr {
                continue;
            }
            if d.is_stuck(ip) || d.is_stuck(im) {
                continue;
            }
            let target = d.visible(ip) - d.visible(im);
            let (lp, _) = d.bounds(ip);
            let (lm, _) = d.bounds(im);
            d.program(ip, lp);
            d.program(im, lm);
            let (dev, goal) = if target >= 0.0 {
                (ip, lp + target)
            } else {
                (im, lm - target)
            };
            for _ in 0..budget {
                if d.conductance(dev) >= goal - 0.5 * step {
                    break;
                }
                d.pulse(dev, 1);
                if d.is_worn_out(dev) {
                    break;
                }
            }
            self.refreshes += 1;
        }
    }
}
