//! Keys and partitions for produced messages, the way Kafka's default partitioner does it:
//! keyed messages go to `murmur2(key) & 0x7fffffff % partitions`; messages without a key stick
//! to one partition until its batch is full, then move on round robin (the sticky partitioner).

/// How message keys are chosen (`--keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyDistribution {
    /// Null keys, sticky partition.
    None,
    /// `key-0000000000`, `key-0000000001`, ... cycling over the key space.
    #[value(alias = "rr")]
    RoundRobin,
    /// Uniformly random keys over the key space.
    Random,
}

impl KeyDistribution {
    pub fn name(self) -> &'static str {
        match self {
            KeyDistribution::None => "none",
            KeyDistribution::RoundRobin => "round-robin",
            KeyDistribution::Random => "random",
        }
    }
}

/// Kafka's `Utils.murmur2` (seed 0x9747b28c), bit for bit.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() == 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `BuiltInPartitioner.partitionForKey`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "partitions={partitions}");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// splitmix64: small, fast, good enough to pick keys.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..bound` (bound > 0); the modulo bias is irrelevant for key choice.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        self.next_u64() % bound
    }
}

/// Bytes of a formatted key: `key-` and ten digits... up to 20 for the largest key space.
const KEY_BYTES_MAX: usize = 4 + 20;

/// Picks the key and partition of each message for one producer.
pub struct Partitioner {
    distribution: KeyDistribution,
    key_space: u64,
    partitions: i32,
    next_key: u64,
    random: SplitMix64,
    sticky_partition: i32,
    key: [u8; KEY_BYTES_MAX],
    key_length: usize,
}

impl Partitioner {
    /// `producer_id` spreads producers over the key space and the sticky partitions.
    pub fn new(
        distribution: KeyDistribution,
        key_space: u64,
        partitions: i32,
        producer_id: u32,
        seed: u64,
    ) -> Partitioner {
        assert!(key_space > 0 && partitions > 0);
        Partitioner {
            distribution,
            key_space,
            partitions,
            next_key: u64::from(producer_id).wrapping_mul(7919) % key_space,
            random: SplitMix64::new(seed ^ u64::from(producer_id).wrapping_mul(0x2545_f491)),
            sticky_partition: (producer_id % partitions as u32) as i32,
            key: [0; KEY_BYTES_MAX],
            key_length: 0,
        }
    }

    /// The next message's key (if any) and partition.
    pub fn next_message(&mut self) -> (Option<&[u8]>, i32) {
        let index = match self.distribution {
            KeyDistribution::None => return (None, self.sticky_partition),
            KeyDistribution::RoundRobin => {
                let index = self.next_key;
                self.next_key = (self.next_key + 1) % self.key_space;
                index
            }
            KeyDistribution::Random => self.random.below(self.key_space),
        };
        self.key_length = format_key(index, &mut self.key);
        let key = &self.key[..self.key_length];
        (Some(key), partition_for_key(key, self.partitions))
    }

    /// A batch for `partition` filled up: null-key messages move to the next partition.
    pub fn on_batch_full(&mut self, partition: i32) {
        if self.distribution == KeyDistribution::None && partition == self.sticky_partition {
            self.sticky_partition = (self.sticky_partition + 1) % self.partitions;
        }
    }
}

/// Writes `key-NNNNNNNNNN` (at least ten digits) and returns its length.
fn format_key(index: u64, out: &mut [u8; KEY_BYTES_MAX]) -> usize {
    out[..4].copy_from_slice(b"key-");
    let mut digits = [0u8; 20];
    let mut value = index;
    let mut count = 0;
    while value > 0 || count < 10 {
        digits[count] = b'0' + (value % 10) as u8;
        value /= 10;
        count += 1;
    }
    for position in 0..count {
        out[4 + position] = digits[count - 1 - position];
    }
    4 + count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Kafka's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input), expected, "{:?}", std::str::from_utf8(input));
        }
    }

    #[test]
    fn keys_format_and_cycle() {
        let mut partitioner = Partitioner::new(KeyDistribution::RoundRobin, 3, 4, 0, 1);
        let mut keys = Vec::new();
        for _ in 0..4 {
            let (key, partition) = partitioner.next_message();
            let key = key.unwrap().to_vec();
            assert_eq!(partition, partition_for_key(&key, 4));
            keys.push(String::from_utf8(key).unwrap());
        }
        assert_eq!(
            keys,
            [
                "key-0000000000",
                "key-0000000001",
                "key-0000000002",
                "key-0000000000"
            ]
        );
        let mut big = [0u8; KEY_BYTES_MAX];
        let length = format_key(u64::MAX, &mut big);
        assert_eq!(&big[..length], format!("key-{}", u64::MAX).as_bytes());
    }

    #[test]
    fn random_keys_stay_in_key_space_and_spread() {
        let mut partitioner = Partitioner::new(KeyDistribution::Random, 50, 8, 3, 42);
        let mut per_partition = [0u32; 8];
        for _ in 0..8000 {
            let (key, partition) = partitioner.next_message();
            let key = std::str::from_utf8(key.unwrap()).unwrap().to_string();
            let index: u64 = key.trim_start_matches("key-").parse().unwrap();
            assert!(index < 50);
            per_partition[partition as usize] += 1;
        }
        assert!(
            per_partition.iter().all(|&count| count > 200),
            "{per_partition:?}"
        );
    }

    #[test]
    fn null_keys_stick_until_the_batch_is_full() {
        let mut partitioner = Partitioner::new(KeyDistribution::None, 1, 3, 0, 0);
        assert_eq!(partitioner.next_message(), (None, 0));
        assert_eq!(partitioner.next_message(), (None, 0));
        partitioner.on_batch_full(1); // not the sticky one: no move
        assert_eq!(partitioner.next_message(), (None, 0));
        partitioner.on_batch_full(0);
        assert_eq!(partitioner.next_message(), (None, 1));
        partitioner.on_batch_full(1);
        partitioner.on_batch_full(2);
        assert_eq!(partitioner.next_message(), (None, 0));
    }
}
