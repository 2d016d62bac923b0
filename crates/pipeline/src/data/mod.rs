//! The data the stages read: labelled task data (built-in sets and user files) and its splits, the plain-text
//! corpus of general distillation, BERT's masking, and TinyBERT's augmentation of a training split.

pub mod augment;
pub mod corpus;
pub mod labelled;
pub mod masking;
pub mod tasks;
