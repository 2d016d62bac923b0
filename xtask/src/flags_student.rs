//! The shape of a narrower, randomly initialised student (`--student-hidden`, heads, FFN, depth), flattened into
//! the general-distillation flags of `distill`, `compress` and `ablate`.

/// A narrow student's shape; any flag given makes the student narrow (TinyBERT's general shape for the rest).
#[derive(clap::Args, Debug)]
pub struct StudentShapeFlags {
    /// Hidden width of a narrow student (randomly initialised; implies --narrow-student).
    #[arg(long)]
    pub student_hidden: Option<usize>,
    /// Attention heads of a narrow student (TinyBERT's attention loss needs the teacher's count).
    #[arg(long)]
    pub student_heads: Option<usize>,
    /// Feed-forward width of a narrow student.
    #[arg(long)]
    pub student_ffn: Option<usize>,
    /// Layers of a narrow student.
    #[arg(long)]
    pub student_depth: Option<usize>,
}

impl StudentShapeFlags {
    /// `c.narrow_student` with the given sizes (from `c`'s own, else TinyBERT's general shape), when any is
    /// given or `narrow` is set. The shapes are checked against the teacher before anything trains
    /// (`DistillConfig::validate_for_teacher`).
    pub fn apply(&self, narrow: bool, c: &mut pipeline::DistillConfig) {
        let any = self.student_hidden.is_some()
            || self.student_heads.is_some()
            || self.student_ffn.is_some()
            || self.student_depth.is_some();
        if !narrow && !any {
            return;
        }
        let mut shape = c
            .narrow_student
            .clone()
            .unwrap_or_else(|| c.general.tinybert_student.clone());
        if let Some(h) = self.student_hidden {
            shape.hidden_size = h;
        }
        if let Some(h) = self.student_heads {
            shape.num_attention_heads = h;
        }
        if let Some(f) = self.student_ffn {
            shape.intermediate_size = f;
        }
        if let Some(d) = self.student_depth {
            shape.layers = d;
        }
        c.narrow_student = Some(shape);
    }
}
