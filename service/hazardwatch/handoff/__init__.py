"""The hand-off between capture and scoring: a bounded queue behind a small interface."""
