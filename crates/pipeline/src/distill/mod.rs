//! Distillation: the recipe end to end ([`run`]: fine-tune the teacher, build and distil the student, evaluate,
//! report), its stages ([`general`] distillation on plain text with the teacher's [`mlm_head`], which
//! [`mlm_fit`] also fits on its own), and the papers' [`ablate`]ion tables, each row a whole run.
//!
//! [`task`] holds the task stages' loss mixes and one step's loss; [`report`] the run's report.
//!
//! Invariant: the stage modules ([`general`], [`mlm_head`], [`task`]) never import the orchestrators ([`run`],
//! [`ablate`]); `cargo xtask check-layout` fails on any import cycle.

pub mod ablate;
pub mod general;
pub mod mlm_fit;
pub mod mlm_head;
pub mod report;
pub mod run;
pub mod task;
