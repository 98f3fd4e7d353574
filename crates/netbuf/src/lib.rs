//! placeholder filled by the messages issue
