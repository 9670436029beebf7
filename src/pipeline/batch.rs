//! Assembly of one `PutRecords` call: a batch that knows Kinesis' caps and says whether the next
//! record fits, handing it back when it does not (as rskafka's `try_push`), so "full, flush,
//! push again" needs no clone and no record can be lost between batches.
//!
//! Generic over the item so the aggregator can batch records together with their reply
//! channels, while tests batch plain values.

use std::fmt;

/// Caps of one batch. Sizes are what Kinesis counts: data + partition key, before base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_records: usize,
    pub max_bytes: usize,
}

/// Why a record was not added.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError<T> {
    /// The batch has no room left for this record; flush it and push again into a new one.
    Full(T),
    /// The record alone is larger than a whole batch may be: it can never be sent.
    TooLarge(T),
}

/// Why a batch was sent; a metric label, so a fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushReason {
    /// Reached the record cap.
    Full,
    /// The next record would have passed the byte cap.
    Bytes,
    /// The oldest record waited `linger`.
    Linger,
    /// No call was in flight, so waiting would only have added latency.
    Idle,
    /// The process is draining.
    Shutdown,
}

impl FlushReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Bytes => "bytes",
            Self::Linger => "linger",
            Self::Idle => "idle",
            Self::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for FlushReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug)]
pub struct Batch<T> {
    items: Vec<T>,
    bytes: usize,
    limits: BatchLimits,
}

impl<T> Batch<T> {
    pub fn new(limits: BatchLimits) -> Self {
        Self {
            items: Vec::with_capacity(limits.max_records.min(64)),
            bytes: 0,
            limits,
        }
    }

    /// Adds `item` of Kinesis size `size`, or hands it back with the reason it does not fit.
    pub fn try_push(&mut self, item: T, size: usize) -> Result<(), PushError<T>> {
        if size > self.limits.max_bytes {
            return Err(PushError::TooLarge(item));
        }
        if self.items.len() >= self.limits.max_records || self.bytes + size > self.limits.max_bytes
        {
            return Err(PushError::Full(item));
        }
        self.items.push(item);
        self.bytes += size;
        Ok(())
    }

    /// True when the record cap is reached; a byte-capped batch is found full by `try_push`.
    pub fn is_full(&self) -> bool {
        self.items.len() >= self.limits.max_records
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn into_items(self) -> Vec<T> {
        self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BatchLimits = BatchLimits {
        max_records: 3,
        max_bytes: 100,
    };

    #[test]
    fn record_cap_hands_the_item_back() {
        let mut batch = Batch::new(LIMITS);
        for i in 0..3 {
            batch.try_push(i, 1).expect("fits");
        }
        assert!(batch.is_full());
        assert_eq!(batch.try_push(99, 1), Err(PushError::Full(99)));
        assert_eq!(batch.into_items(), vec![0, 1, 2]);
    }

    #[test]
    fn byte_cap_is_inclusive_and_exact() {
        let mut batch = Batch::new(LIMITS);
        batch.try_push("a", 60).expect("fits");
        assert_eq!(batch.try_push("b", 41), Err(PushError::Full("b")));
        batch.try_push("c", 40).expect("exactly 100 fits");
        assert_eq!(batch.bytes(), 100);
        assert_eq!(batch.len(), 2);
        assert!(!batch.is_full(), "record cap not reached");
    }

    #[test]
    fn oversize_item_is_its_own_error_even_in_an_empty_batch() {
        let mut batch: Batch<&str> = Batch::new(LIMITS);
        assert_eq!(
            batch.try_push("huge", 101),
            Err(PushError::TooLarge("huge"))
        );
        assert!(batch.is_empty());
        batch
            .try_push("max", 100)
            .expect("a record of exactly the cap fits alone");
    }

    #[test]
    fn kinesis_sized_batches_of_500() {
        let limits = BatchLimits {
            max_records: 500,
            max_bytes: 5 * 1024 * 1024,
        };
        let mut batch = Batch::new(limits);
        let mut pushed = 0;
        while batch.try_push(pushed, 10 * 1024 + 16).is_ok() {
            pushed += 1;
        }
        // 500 records of 10 KiB + key are 5,128,000 bytes: the byte cap (5,242,880) is not the
        // binding one, the record cap is.
        assert_eq!(pushed, 500);
        let mut big = Batch::new(limits);
        let mut n = 0;
        while big.try_push(n, 20 * 1024).is_ok() {
            n += 1;
        }
        assert_eq!(n, 256, "5 MiB / 20 KiB");
    }
}

#[cfg(test)]
mod proptests;
