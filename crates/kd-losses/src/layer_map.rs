//! Which teacher layer each student layer learns from.

use crate::error::{LossError, Result};

/// Pairs `(student_layer, teacher_layer)` of 0-based transformer-layer indices.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerMap {
    /// `(student, teacher)` pairs, one per student layer.
    pub pairs: Vec<(usize, usize)>,
    /// Layers of the student.
    pub num_student_layers: usize,
    /// Layers of the teacher.
    pub num_teacher_layers: usize,
}

fn check_sizes(num_student: usize, num_teacher: usize) -> Result<()> {
    if num_student == 0 || num_teacher == 0 {
        return Err(LossError::LayerMap {
            message: format!(
                "{num_student} student and {num_teacher} teacher layers; both must be positive"
            ),
        });
    }
    if num_student > num_teacher {
        return Err(LossError::LayerMap {
            message: format!(
                "the student has {num_student} layers, more than the teacher's {num_teacher}"
            ),
        });
    }
    Ok(())
}

impl LayerMap {
    /// TinyBERT's uniform map: student layer m ↔ teacher layer m·k (1-based), k = teacher / student layers.
    pub fn uniform(num_student: usize, num_teacher: usize) -> Result<Self> {
        check_sizes(num_student, num_teacher)?;
        if !num_teacher.is_multiple_of(num_student) {
            return Err(LossError::LayerMap {
                message: format!(
                    "uniform map needs the teacher's {num_teacher} layers to be a multiple of the student's {num_student}; use an explicit map"
                ),
            });
        }
        let k = num_teacher / num_student;
        Self::explicit(
            (0..num_student).map(|i| (i + 1) * k - 1).collect(),
            num_teacher,
        )
    }

    /// The uniform map for any sizes: student layer m ↔ teacher layer ⌊m·T/S⌋ (1-based), so the last student
    /// layer learns from the last teacher layer. Equals [`LayerMap::uniform`] when S divides T; for 4 of 6 it
    /// gives teacher layers 0, 2, 3, 5.
    pub fn spread(num_student: usize, num_teacher: usize) -> Result<Self> {
        check_sizes(num_student, num_teacher)?;
        Self::explicit(
            (0..num_student)
                .map(|i| (i + 1) * num_teacher / num_student - 1)
                .collect(),
            num_teacher,
        )
    }

    /// DistilBERT's every other layer: student layer i ↔ teacher layer 2i.
    pub fn every_other(num_student: usize, num_teacher: usize) -> Result<Self> {
        check_sizes(num_student, num_teacher)?;
        Self::explicit((0..num_student).map(|i| 2 * i).collect(), num_teacher)
    }

    /// The teacher's last `num_student` layers, in order.
    pub fn last_k(num_student: usize, num_teacher: usize) -> Result<Self> {
        check_sizes(num_student, num_teacher)?;
        Self::explicit(
            (num_teacher - num_student..num_teacher).collect(),
            num_teacher,
        )
    }

    /// Student layer i ↔ `teacher_layers[i]`. Indices must be in range and strictly increasing.
    pub fn explicit(teacher_layers: Vec<usize>, num_teacher: usize) -> Result<Self> {
        check_sizes(teacher_layers.len(), num_teacher)?;
        for (i, &t) in teacher_layers.iter().enumerate() {
            if t >= num_teacher {
                return Err(LossError::LayerMap {
                    message: format!("student layer {i} maps to teacher layer {t}, but the teacher has layers 0..{num_teacher}"),
                });
            }
            if i > 0 && t <= teacher_layers[i - 1] {
                return Err(LossError::LayerMap {
                    message: format!("student layer {i} maps to teacher layer {t}, not after layer {} of student layer {}", teacher_layers[i - 1], i - 1),
                });
            }
        }
        Ok(Self {
            num_student_layers: teacher_layers.len(),
            pairs: teacher_layers.into_iter().enumerate().collect(),
            num_teacher_layers: num_teacher,
        })
    }

    /// Checks the map against actual layer counts.
    pub fn check(&self, num_student: usize, num_teacher: usize) -> Result<()> {
        if self.num_student_layers != num_student || self.num_teacher_layers != num_teacher {
            return Err(LossError::LayerMap {
                message: format!(
                    "the map is for {}→{} layers, the models have {num_student} (student) and {num_teacher} (teacher)",
                    self.num_student_layers, self.num_teacher_layers
                ),
            });
        }
        Ok(())
    }

    /// The teacher layers, in student order.
    pub fn teacher_layers(&self) -> Vec<usize> {
        self.pairs.iter().map(|&(_, t)| t).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_maps() {
        assert_eq!(
            LayerMap::uniform(3, 6).unwrap().teacher_layers(),
            vec![1, 3, 5]
        );
        assert_eq!(
            LayerMap::uniform(4, 12).unwrap().teacher_layers(),
            vec![2, 5, 8, 11]
        );
        assert_eq!(
            LayerMap::every_other(3, 6).unwrap().teacher_layers(),
            vec![0, 2, 4]
        );
        assert_eq!(LayerMap::last_k(2, 6).unwrap().teacher_layers(), vec![4, 5]);
        assert_eq!(
            LayerMap::spread(4, 6).unwrap().teacher_layers(),
            vec![0, 2, 3, 5]
        );
        for (s, t) in [(3, 6), (4, 12), (2, 6), (6, 6)] {
            assert_eq!(
                LayerMap::spread(s, t).unwrap(),
                LayerMap::uniform(s, t).unwrap()
            );
        }
        assert!(LayerMap::spread(7, 6).is_err());
        assert_eq!(
            LayerMap::explicit(vec![0, 2, 5], 6).unwrap().pairs,
            vec![(0, 0), (1, 2), (2, 5)]
        );
    }

    #[test]
    fn invalid_maps_name_the_index() {
        let err = LayerMap::explicit(vec![0, 2, 6], 6)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("student layer 2") && err.contains("teacher layer 6"),
            "{err}"
        );
        let err = LayerMap::explicit(vec![3, 1], 6).unwrap_err().to_string();
        assert!(err.contains("student layer 1"), "{err}");
        assert!(LayerMap::uniform(4, 6)
            .unwrap_err()
            .to_string()
            .contains("multiple"));
        assert!(LayerMap::every_other(4, 6)
            .unwrap_err()
            .to_string()
            .contains("student layer 3"));
        assert!(LayerMap::last_k(7, 6)
            .unwrap_err()
            .to_string()
            .contains("more than"));
        assert!(LayerMap::uniform(3, 6).unwrap().check(3, 12).is_err());
    }
}
