//! Training: what every stage shares ([`context`]), resuming a stage from its checkpoints ([`resume`]), the
//! loop itself ([`stage`]) and how it shows progress ([`progress`]: a bar, or lines when not on a terminal). The re-exports below are the room's surface; its modules import each other directly.

pub mod context;
pub mod progress;
pub mod resume;
pub mod stage;

pub use context::{
    batch_input, encode, load_record, optimizer, optimizer_step, Encoded, RunOptions, StageConfig,
    StageContext, StageOutcome,
};
pub use stage::run_stage;
