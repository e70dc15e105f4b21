// SPDX-License-Identifier: Apache-2.0
// Maglev table generation (Eisenbud et al., NSDI'16, §3.4, Pseudocode 1),
// with weights.
//
// The fill: backends take turns; on its turn a backend walks its own
// permutation, permutation[j] = (offset + j * skip) % M, from where it left
// off and claims the first slot still free. M is prime and 1 <= skip < M,
// so every permutation visits every slot: a turn always finds one, and the
// table is full after exactly M turns.
//
// Weights: §3.4 only says they come from changing how often each backend
// takes a turn. Here the turns go in rounds. In each round backend i earns
// weight_i / max_weight of a turn and takes one once it has earned a whole
// one; it starts with 1 - weight_i / max_weight, so turn k of backend i
// falls in round ceil(k * max_weight / weight_i). Hence:
//  - every backend of weight > 0 takes a turn in round 0, so it gets at
//    least one slot while there are no more backends than slots;
//  - a turn claims exactly one slot, so a backend's slot count is its turn
//    count, within one round's turns of M * weight_i / sum(weights);
//  - a max-weight backend takes a turn every round: the table is full
//    within M rounds.
// Within a round, turns go in address order. Credit is kept in integer
// units of 1 / max_weight: no floating point that could round differently
// on another machine or build. With equal weights this is Pseudocode 1
// exactly (tests/unit/maglev_test.cpp builds both and compares).
//
// Speed: a build walks about M * ln(M) permutation entries in all, most of
// them in its last turns. table_filler below probes several entries of a
// walk at once, each an add, a select and a load, with one branch for all
// of them; and finishes the last ~sqrt(M) slots another way. The schedulers
// hand it turns in batches.

#include "maglev.h"

#include "error.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>
#include <tuple>
#include <utility>

namespace sluice {

bool is_prime(uint32_t n)
{
	if (n < 2)
		return false;
	if (n < 4)
		return true;
	if (n % 2 == 0 || n % 3 == 0)
		return false;
	// Every prime above 3 is 6k +- 1; sqrt(2^32) bounds the loop at 2^16.
	for (uint64_t d = 5; d * d <= n; d += 6)
		if (n % d == 0 || n % (d + 2) == 0)
			return false;
	return true;
}

namespace {

void check_size(size_t m)
{
	if (m < SLUICE_MAGLEV_MIN_SIZE || m > SLUICE_MAGLEV_MAX_SIZE)
		throw error("maglev table size {} is outside {}..{}", m, SLUICE_MAGLEV_MIN_SIZE,
			    SLUICE_MAGLEV_MAX_SIZE);
	if (!is_prime((uint32_t)m))
		throw error("maglev table size {} is not prime", m);
}

// a + b mod m, for a, b < m <= 2^22: no division.
uint32_t add_mod(uint32_t a, uint32_t b, uint32_t m)
{
	const uint32_t s = a + b;
	return s >= m ? s - m : s;
}

// One backend's walk through its permutation, 32-bit fields only (24
// bytes). Weights and credit, which only the schedulers read, are kept
// apart.
struct walker {
	uint32_t cur; // permutation[i][next[i]] of Pseudocode 1, as a slot number
	uint32_t id;
	// (k + 1) * skip % M for k = 0..3: the walk's next entries are cur,
	// cur + step[0], cur + step[1], cur + step[2], the four after those
	// step[3] further, and so on.
	uint32_t step[4];

	walker(uint32_t offset, uint32_t skip, uint32_t id_, uint32_t m) : cur(offset), id(id_)
	{
		step[0] = skip;
		for (int k = 1; k < 4; k++)
			step[k] = add_mod(step[k - 1], skip, m);
	}
};

// x^-1 mod m for prime m and 0 < x < m (extended Euclid).
uint32_t mod_inverse(uint32_t x, uint32_t m)
{
	int64_t r0 = m, r1 = x, t0 = 0, t1 = 1;
	while (r1 != 0) {
		const int64_t q = r0 / r1;
		std::tie(r0, r1) = std::pair(r1, r0 - q * r1);
		std::tie(t0, t1) = std::pair(t1, t0 - q * t1);
	}
	return (uint32_t)(t0 < 0 ? t0 + m : t0);
}

// Which slots have a backend, as the walk probes them: the table itself is
// never read. A byte a slot makes a probe one load, with no shift by a
// variable count; a bit a slot makes the map 8 times smaller. Bytes while
// the map fits in 512 KiB, within the L2 of current server cores; bits
// beyond, where the byte map's cache misses cost more than the shifts save
// (the fill alone, N = 1,000, bytes against bits: 15% faster at M =
// 262,139, 50% slower at M = 4,194,301).
constexpr uint32_t slot_bytes_max = 1u << 19;

class slot_bytes {
public:
	explicit slot_bytes(uint32_t m) : taken_(m, 0) {}

	// What the walk holds: a plain pointer, which its byte stores cannot
	// make the compiler reload as they could the vector's.
	struct view {
		uint8_t *map;
		uint32_t taken(uint32_t c) const { return map[c]; }
		void take(uint32_t c) const { map[c] = 1; }
	};
	view get() { return {taken_.data()}; }

	// Calls f(c) for every free slot c.
	template <class F>
	void for_each_free(F f) const
	{
		// 32 slots at a time: all but a few are taken. The and of four
		// words has a byte 1 only where all four have.
		constexpr uint64_t eight_taken = 0x0101010101010101ULL;
		const uint32_t m = (uint32_t)taken_.size();
		uint32_t c = 0;
		for (; c + 32 <= m; c += 32) {
			uint64_t w[4];
			std::memcpy(w, &taken_[c], sizeof(w));
			if ((w[0] & w[1] & w[2] & w[3]) != eight_taken)
				for (uint32_t k = c; k < c + 32; k++)
					if (!taken_[k])
						f(k);
		}
		for (; c < m; c++)
			if (!taken_[c])
				f(c);
	}

private:
	std::vector<uint8_t> taken_;
};

class slot_bits {
public:
	explicit slot_bits(uint32_t m) : m_(m), taken_((m + 63) / 64, 0) {}

	struct view {
		uint64_t *map;
		uint32_t taken(uint32_t c) const { return (uint32_t)(map[c >> 6] >> (c & 63)) & 1; }
		void take(uint32_t c) const { map[c >> 6] |= 1ULL << (c & 63); }
	};
	view get() { return {taken_.data()}; }

	template <class F>
	void for_each_free(F f) const
	{
		for (uint32_t w = 0; w < taken_.size(); w++) {
			for (uint64_t bits = ~taken_[w]; bits != 0; bits &= bits - 1) {
				const uint32_t c = w * 64 + (uint32_t)std::countr_zero(bits);
				if (c < m_)
					f(c);
			}
		}
	}

private:
	uint32_t m_;
	std::vector<uint64_t> taken_;
};

// Which backend takes each turn never depends on the table, only on the
// weights: so the schedulers below hand the filler their turns in batches,
// and its walk keeps its state in registers across a batch.
constexpr size_t turn_batch = 256;

template <class Slots>
class table_filler {
public:
	table_filler(std::span<uint32_t> table, std::vector<walker> walkers)
		: table_(table), walkers_(std::move(walkers)), m_((uint32_t)table.size()),
		  free_count_(m_), slots_(m_), inv_m_(1.0 / m_)
	{
		// A walk costs about M / F probes once F slots are free, a scan
		// of the free list F candidates, so the two cross near
		// F = sqrt(M). 0.5 * sqrt(M) measured best of 0, 0.5, 1, 2 and 4
		// times sqrt(M) at M = 65,537 and 1,048,573 (bench_maglev, and
		// instruction counts under callgrind); and again of 0.25, 0.5
		// and 1 with the walk below.
		endgame_at_ = (uint32_t)(0.5 * std::sqrt((double)m_)); // >= 7: M >= 251
	}

	// Takes the turns listed (indices into the walkers), in order. True
	// once the table is full; the turns left in the list then don't count.
	bool take_turns(std::span<const uint32_t> turns)
	{
		while (!turns.empty()) {
			if (free_count_ <= endgame_at_) {
				for (const uint32_t i : turns)
					if (take_turn_endgame(i))
						return true;
				return false;
			}
			const uint32_t wide = m_ / 4;
			const uint32_t until = free_count_ > wide ? wide : endgame_at_;
			const size_t k = std::min<size_t>(turns.size(), free_count_ - until);
			if (free_count_ > wide)
				walk<4>(turns.first(k));
			else
				walk<8>(turns.first(k));
			free_count_ -= (uint32_t)k;
			turns = turns.subspan(k);
			if (free_count_ == endgame_at_)
				enter_endgame();
		}
		return false;
	}

private:
	// Each turn claims the backend's next free slot, probing its next K
	// permutation entries at a time.
	//  - K entries, as K chains each stepping K * skip: a step is a
	//    compare and a select between p + step and p - (M - step), both
	//    from p alone (no division), two cycles; K chains make K probes
	//    in those two cycles instead of one.
	//  - One branch per K probes: a walk that probes one entry at a time
	//    mispredicts its loop's exit about once a turn once half the
	//    slots are taken, a third of a build's time at M = 65,537. With
	//    K entries a branch, the exit is predicted while the first K
	//    nearly always hold a free slot: K = 4 while more than a quarter
	//    of the slots are free (a turn then needs fewer than 4 on
	//    average), K = 8 after that (measured best of 4 and 8 over each
	//    halving of F).
	// Probing past the first free entry is harmless: only the first free
	// one of the K, in walk order, is claimed. Measured on the fill alone
	// (N = 1,000), against one probe at a time: 25% less time at M =
	// 65,537; about the same at M = 1,048,573 (bits), where cache misses
	// bound both.
	template <int K>
	void walk(std::span<const uint32_t> turns)
	{
		static_assert(K == 4 || K == 8);
		const uint32_t m = m_;
		const typename Slots::view slots = slots_.get();
		uint32_t *const table = table_.data();
		walker *const ws = walkers_.data();
		for (const uint32_t i : turns) {
			walker &w = ws[i];
			uint32_t p[K];
			p[0] = w.cur;
			for (int j = 1; j < 4; j++)
				p[j] = add_mod(p[0], w.step[j - 1], m);
			uint32_t step = w.step[3];
			if constexpr (K == 8) {
				for (int j = 4; j < 8; j++)
					p[j] = add_mod(p[j - 4], step, m);
				step = add_mod(step, step, m);
			}
			const uint32_t back = m - step;
			uint32_t t;
			for (;;) {
				t = 0;
				for (int j = 0; j < K; j++)
					t |= slots.taken(p[j]) << j;
				if (t != (1u << K) - 1)
					break;
				for (int j = 0; j < K; j++)
					p[j] = p[j] < back ? p[j] + step : p[j] - back;
			}
			const uint32_t c = p[std::countr_one(t)];
			slots.take(c);
			table[c] = w.id;
			w.cur = add_mod(c, w.step[0], m);
		}
	}

	// The last few slots are where a walk is long: with F free, about
	// M / F probes, and most of a build's probes are spent there (M * H(M)
	// in all). So once few are left, find the backend's next free slot
	// directly instead: slot = cur + j * skip (mod M) is at step
	// j = (slot - cur) * skip^-1 (mod M), and the free slot with the
	// smallest j is the one the walk would reach first. Same table, F
	// multiplications a turn instead of M / F probes. From here on free_,
	// not slots_, says which slots are free.
	void enter_endgame()
	{
		free_.clear();
		free_.reserve(free_count_);
		slots_.for_each_free([this](uint32_t c) { free_.push_back(c); });
		skip_inv_.assign(walkers_.size(), 0);
	}

	bool take_turn_endgame(uint32_t i)
	{
		walker &s = walkers_[i];
		const uint32_t m = m_;
		const uint32_t skip = s.step[0];
		if (skip_inv_[i] == 0)
			skip_inv_[i] = mod_inverse(skip, m);
		const uint64_t inv = skip_inv_[i];
		const uint32_t cur = s.cur;
		uint32_t best_j = m, best_k = 0;
		for (uint32_t k = 0; k < free_.size(); k++) {
			const uint32_t c = free_[k];
			const uint64_t d = c >= cur ? c - cur : c + m - cur;
			// (d * inv) % M without a 64-bit division: the product
			// is below 2^46, exact in a double, so the quotient
			// estimate is off by at most one and the two fix-ups
			// make the remainder exact.
			const uint64_t x = d * inv;
			int64_t j = (int64_t)x - (int64_t)((double)x * inv_m_) * (int64_t)m;
			j += j < 0 ? m : 0;
			j -= j >= m ? m : 0;
			if ((uint32_t)j < best_j) {
				best_j = (uint32_t)j;
				best_k = k;
			}
		}
		const uint32_t c = free_[best_k];
		free_[best_k] = free_.back();
		free_.pop_back();
		table_[c] = s.id;
		s.cur = add_mod(c, skip, m);
		return --free_count_ == 0;
	}

	std::span<uint32_t> table_;
	std::vector<walker> walkers_;
	uint32_t m_;
	uint32_t free_count_;
	uint32_t endgame_at_;
	Slots slots_;
	std::vector<uint32_t> free_;
	std::vector<uint32_t> skip_inv_; // skip^-1 mod M by walker, for the endgame; 0 until needed
	double inv_m_;
};

// Collects turns and hands them to the filler a batch at a time.
template <class Filler>
class turn_queue {
public:
	explicit turn_queue(Filler &f) : f_(f) {}

	// True once the table is full.
	bool push(uint32_t i)
	{
		buf_[len_++] = i;
		return len_ == turn_batch && flush();
	}

private:
	bool flush()
	{
		len_ = 0;
		return f_.take_turns(buf_);
	}

	Filler &f_;
	uint32_t buf_[turn_batch];
	size_t len_ = 0;
};

// All weights equal: every backend takes a turn every round (the sweep
// below, with its credit always 0), which is Pseudocode 1 itself. A round's
// turns are 0..N-1, handed over whole, and with fewer than turn_batch
// backends several rounds at once (N = 10: a call for every 10 turns cost
// a fifth of the build).
template <class Filler>
void fill_round_robin(Filler &f, uint32_t n)
{
	const size_t rounds = (turn_batch + n - 1) / n;
	std::vector<uint32_t> turns(rounds * n);
	for (size_t r = 0; r < rounds; r++)
		std::iota(turns.begin() + r * n, turns.begin() + (r + 1) * n, 0);
	while (!f.take_turns(turns)) {
	}
}

// Two schedulers for the same turns. The sweep visits every backend every
// round: rounds * N visits, M * max_weight / mean_weight in all, about 1 ns
// each; cheapest when weights are close (all equal, or a few lowered). The
// heap visits only backends whose turn it is, but its sift costs ~60 ns a
// turn (mispredicted compares); it is there so that a skewed set (one
// backend of weight 10^6 among 10,000 of weight 1) cannot cost M * N.
// Measured with bench_maglev's skewed cases (M = 65,537, N = 1,000): the
// sweep wins at max/mean = 21, the heap at 42.
constexpr uint64_t sweep_max_over_mean = 32;

// Each visit adds the backend's weight to its credit and takes a turn once
// the credit reaches max_w. When most visits take one (weights within 4x
// of each other), which ones do follows no pattern a branch can predict
// (weights 1..100: callgrind's branch model mispredicts 44% of visits), so
// every visit writes its index and only one that takes a turn moves the
// end of the batch past it. When few do, a branch is cheaper: it is then
// nearly always right, and marked unlikely so that a visit without a turn
// runs straight through (bench_maglev's weighted and skewed cases). Either
// way the batch is checked for room once per 64 visits, not at each.
template <bool every_visit_writes, class Filler>
void fill_sweep(Filler &f, std::span<const uint32_t> weight, uint32_t max_w)
{
	constexpr uint32_t block = 64;
	static_assert(block <= turn_batch);
	const uint32_t n = (uint32_t)weight.size();
	std::vector<uint64_t> credit(n);
	for (uint32_t i = 0; i < n; i++)
		credit[i] = max_w - weight[i];
	uint32_t turns[turn_batch];
	size_t len = 0;
	for (;;) {
		for (uint32_t i = 0; i < n;) {
			for (const uint32_t end = std::min(n, i + block); i < end; i++) {
				uint64_t c = credit[i] + weight[i];
				if constexpr (every_visit_writes) {
					const bool take = c >= max_w;
					c = take ? c - max_w : c;
					turns[len] = i;
					len += take;
				} else if (c >= max_w) [[unlikely]] {
					c -= max_w;
					turns[len++] = i;
				}
				credit[i] = c;
			}
			if (len > turn_batch - block) {
				if (f.take_turns({turns, len}))
					return;
				len = 0;
			}
		}
	}
}

template <class Filler>
void fill_heap(Filler &f, std::span<const uint32_t> weight, uint32_t max_w, uint32_t m)
{
	// A max-weight backend takes a turn every round: those go in a plain
	// list. The others wait in a min-heap keyed (round << 32 | index), so
	// popping it, merged with the list by index, yields this round's turns
	// in address order.
	struct light_state {
		uint32_t q, rem; // max_w = q * weight + rem
		uint64_t slack; // round * weight - turns * max_w, in [0, weight)
	};
	std::vector<uint32_t> every_round;
	std::vector<light_state> light(weight.size());
	std::vector<uint64_t> heap;
	for (uint32_t i = 0; i < weight.size(); i++) {
		const uint32_t w = weight[i];
		if (w == max_w) {
			every_round.push_back(i);
		} else {
			light[i] = {max_w / w, max_w % w, 0};
			heap.push_back(i); // round 0
		}
	}
	std::make_heap(heap.begin(), heap.end(), std::greater<>{});
	const uint64_t last_round = m; // the table is full by then
	turn_queue<Filler> q(f);

	for (uint64_t round = 0;; round++) {
		const uint64_t base = round << 32;
		size_t k = 0;
		for (;;) {
			const uint64_t next_full =
				base | (k < every_round.size() ? every_round[k] : 0xFFFFFFFFu);
			if (!heap.empty() && heap.front() < next_full) {
				std::pop_heap(heap.begin(), heap.end(), std::greater<>{});
				const uint32_t i = (uint32_t)heap.back();
				if (q.push(i))
					return;
				// Next turn in round ceil((turns + 1) * max_w / w),
				// found from the slack without a division.
				light_state &l = light[i];
				const int64_t d = (int64_t)l.rem - (int64_t)l.slack;
				uint64_t next;
				if (d > 0) {
					next = round + l.q + 1;
					l.slack = weight[i] - (uint64_t)d;
				} else {
					next = round + l.q;
					l.slack = (uint64_t)-d;
				}
				if (next <= last_round) {
					heap.back() = (next << 32) | i;
					std::push_heap(heap.begin(), heap.end(), std::greater<>{});
				} else {
					heap.pop_back();
				}
			} else if (k < every_round.size()) {
				if (q.push(every_round[k++]))
					return;
			} else {
				break;
			}
		}
	}
}

// The same turns whichever scheduler yields them: each is picked only for
// speed.
template <class Slots>
void fill(std::span<uint32_t> table, std::vector<walker> walkers, std::span<const uint32_t> weight,
	  uint32_t max_w, uint64_t sum_w)
{
	const uint32_t n = (uint32_t)walkers.size();
	table_filler<Slots> f(table, std::move(walkers));
	if ((uint64_t)max_w * n == sum_w)
		fill_round_robin(f, n);
	else if ((uint64_t)max_w * n / 4 <= sum_w)
		fill_sweep<true>(f, weight, max_w);
	else if ((uint64_t)max_w * n / sweep_max_over_mean <= sum_w)
		fill_sweep<false>(f, weight, max_w);
	else
		fill_heap(f, weight, max_w, (uint32_t)table.size());
}

// Sort key equal to ip_address's order (family, then bytes), as integers.
struct sort_key {
	uint8_t family;
	uint64_t hi, lo; // the 16 bytes, big-endian
	uint32_t index;

	bool operator<(const sort_key &o) const
	{
		if (family != o.family)
			return family < o.family;
		if (hi != o.hi)
			return hi < o.hi;
		return lo < o.lo;
	}
	bool same_address(const sort_key &o) const
	{
		return family == o.family && hi == o.hi && lo == o.lo;
	}
};

uint64_t load_be64(const uint8_t *p)
{
	uint64_t v;
	std::memcpy(&v, p, sizeof(v));
	return std::endian::native == std::endian::little ? __builtin_bswap64(v) : v;
}

} // namespace

void maglev_build(std::span<const maglev_backend> backends, std::span<uint32_t> table)
{
	check_size(table.size());
	const uint32_t m = (uint32_t)table.size();
	// The heap keys hold an index in 32 bits, 0xFFFFFFFF being its sentinel.
	if (backends.size() >= 0xFFFFFFFFu)
		throw error("maglev: {} backends is too many", backends.size());

	// Every LB must build the same table from the same set, whatever
	// order its configuration lists it in: fill in address order.
	std::vector<sort_key> keys;
	keys.reserve(backends.size());
	for (uint32_t i = 0; i < backends.size(); i++) {
		const maglev_backend &b = backends[i];
		if (b.address.empty())
			throw error("maglev: backend #{} has no address", i);
		if (b.id == SLUICE_MAGLEV_EMPTY)
			throw error("maglev: backend {} has id {}, the value of an empty slot",
				    b.address.str(), b.id);
		keys.push_back({b.address.family, load_be64(b.address.bytes.data()),
				load_be64(b.address.bytes.data() + 8), i});
	}
	// Configurations mostly list backends in order already, and checking
	// is cheap: 10,000 keys in order take 7 us to check, 130 us to sort.
	if (!std::is_sorted(keys.begin(), keys.end()))
		std::sort(keys.begin(), keys.end());
	for (size_t i = 1; i < keys.size(); i++)
		if (keys[i].same_address(keys[i - 1]))
			throw error("maglev: backend {} is listed twice",
				    backends[keys[i].index].address.str());

	std::vector<walker> walkers;
	std::vector<uint32_t> weight;
	walkers.reserve(keys.size());
	weight.reserve(keys.size());
	uint32_t max_w = 0;
	uint64_t sum_w = 0;
	for (const sort_key &k : keys) {
		const maglev_backend &b = backends[k.index];
		if (b.weight == 0)
			continue;
		// The hashes read the 16 bytes as two 64-bit words: hand them an
		// aligned copy (ip_address::bytes sits at offset 1).
		alignas(8) uint8_t addr[16];
		std::memcpy(addr, b.address.bytes.data(), sizeof(addr));
		const uint8_t fam = b.address.family;
		walkers.emplace_back(sluice_maglev_offset(addr, fam, m),
				     sluice_maglev_skip(addr, fam, m), b.id, m);
		weight.push_back(b.weight);
		max_w = std::max(max_w, b.weight);
		sum_w += b.weight;
	}

	if (walkers.empty()) {
		std::fill(table.begin(), table.end(), SLUICE_MAGLEV_EMPTY);
		return;
	}
	if (m <= slot_bytes_max)
		fill<slot_bytes>(table, std::move(walkers), weight, max_w, sum_w);
	else
		fill<slot_bits>(table, std::move(walkers), weight, max_w, sum_w);
}

std::vector<uint32_t> maglev_build(std::span<const maglev_backend> backends, uint32_t m)
{
	check_size(m); // before allocating M slots
	std::vector<uint32_t> table(m);
	maglev_build(backends, table);
	return table;
}

} // namespace sluice
