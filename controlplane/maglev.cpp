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
// exactly (tests/maglev_test.cpp builds both and compares).
//
// Speed: a build walks about M * ln(M) permutation entries in all, most of
// them in its last turns; table_filler below keeps each step to an add and
// a bit test, and finishes the last ~sqrt(M) slots another way.

#include "maglev.h"

#include "error.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
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

// What the fill touches per backend, in address order. 32 bytes: 1,000
// backends (32 KiB) and the bitmap of an M = 65,537 table (8 KiB) share a
// 48 KiB L1.
struct fill_state {
	uint32_t cur; // permutation[i][next[i]] of Pseudocode 1, as a slot number
	uint32_t skip;
	uint32_t id;
	uint32_t weight;
	uint64_t credit; // sweep scheduler: earned turns, in units of 1 / max_weight
	uint32_t skip_inv; // skip^-1 mod M, for the endgame; 0 until needed
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

class table_filler {
public:
	explicit table_filler(std::span<uint32_t> table)
		: table_(table), m_((uint32_t)table.size()), free_count_(m_),
		  used_((table.size() + 63) / 64, 0), inv_m_(1.0 / m_)
	{
		// A walk costs about M / F probes once F slots are free, a scan
		// of the free list F candidates, so the two cross near
		// F = sqrt(M). 0.5 * sqrt(M) measured best of 0, 0.5, 1, 2 and 4
		// times sqrt(M) at M = 65,537 and 1,048,573 (bench_maglev, and
		// instruction counts under callgrind).
		endgame_at_ = (uint32_t)(0.5 * std::sqrt((double)m_)); // >= 7: M >= 251
	}

	// One turn: claim the backend's next preferred free slot. True once
	// the table is full.
	bool take_turn(fill_state &s)
	{
		if (free_count_ <= endgame_at_)
			return take_turn_endgame(s);
		const uint32_t m = m_;
		const uint32_t skip = s.skip;
		uint32_t c = s.cur;
		// (offset + j * skip) % M, one step at a time: an add and a
		// conditional subtract instead of a division per probe (c and
		// skip are below M < 2^23, so the add cannot overflow). The
		// bitmap, not the table, says which slots are taken: M / 8 bytes
		// (8 KiB at M = 65,537) stay in L1.
		while (used(c)) {
			c += skip;
			c = c >= m ? c - m : c;
		}
		mark(c);
		table_[c] = s.id;
		c += skip;
		s.cur = c >= m ? c - m : c;
		if (--free_count_ == endgame_at_)
			enter_endgame();
		return free_count_ == 0;
	}

private:
	bool used(uint32_t c) const { return used_[c >> 6] & (1ULL << (c & 63)); }
	void mark(uint32_t c) { used_[c >> 6] |= 1ULL << (c & 63); }

	// The last few slots are where a walk is long: with F free, about
	// M / F probes, and most of a build's probes are spent there (M * H(M)
	// in all). So once few are left, find the backend's next free slot
	// directly instead: slot = cur + j * skip (mod M) is at step
	// j = (slot - cur) * skip^-1 (mod M), and the free slot with the
	// smallest j is the one the walk would reach first. Same table, F
	// multiplications a turn instead of M / F probes.
	void enter_endgame()
	{
		free_.clear();
		for (uint32_t w = 0; w < used_.size(); w++) {
			for (uint64_t bits = ~used_[w]; bits != 0; bits &= bits - 1) {
				const uint32_t c = w * 64 + (uint32_t)std::countr_zero(bits);
				if (c < m_)
					free_.push_back(c);
			}
		}
	}

	bool take_turn_endgame(fill_state &s)
	{
		const uint32_t m = m_;
		if (s.skip_inv == 0)
			s.skip_inv = mod_inverse(s.skip, m);
		const uint64_t inv = s.skip_inv;
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
		mark(c);
		table_[c] = s.id;
		const uint32_t next = c + s.skip;
		s.cur = next >= m ? next - m : next;
		return --free_count_ == 0;
	}

	std::span<uint32_t> table_;
	uint32_t m_;
	uint32_t free_count_;
	uint32_t endgame_at_;
	std::vector<uint64_t> used_;
	std::vector<uint32_t> free_;
	double inv_m_;
};

// Two schedulers for the same turns. The sweep visits every backend every
// round: rounds * N visits, M * max_weight / mean_weight in all, about 1 ns
// each; cheapest when weights are close (all equal, or a few lowered). The
// heap visits only backends whose turn it is, but its sift costs ~60 ns a
// turn (mispredicted compares); it is there so that a skewed set (one
// backend of weight 10^6 among 10,000 of weight 1) cannot cost M * N.
// Measured with bench_maglev's skewed cases (M = 65,537, N = 1,000): the
// sweep wins at max/mean = 21, the heap at 42.
constexpr uint64_t sweep_max_over_mean = 32;

void fill_sweep(table_filler &f, std::span<fill_state> st, uint32_t max_w)
{
	for (auto &s : st)
		s.credit = max_w - s.weight;
	for (;;) {
		for (auto &s : st) {
			s.credit += s.weight;
			if (s.credit >= max_w) {
				s.credit -= max_w;
				if (f.take_turn(s))
					return;
			}
		}
	}
}

void fill_heap(table_filler &f, std::span<fill_state> st, uint32_t max_w, uint32_t m)
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
	std::vector<light_state> light(st.size());
	std::vector<uint64_t> heap;
	for (uint32_t i = 0; i < st.size(); i++) {
		const uint32_t w = st[i].weight;
		if (w == max_w) {
			every_round.push_back(i);
		} else {
			light[i] = {max_w / w, max_w % w, 0};
			heap.push_back(i); // round 0
		}
	}
	std::make_heap(heap.begin(), heap.end(), std::greater<>{});
	const uint64_t last_round = m; // the table is full by then

	for (uint64_t round = 0;; round++) {
		const uint64_t base = round << 32;
		size_t k = 0;
		for (;;) {
			const uint64_t next_full =
				base | (k < every_round.size() ? every_round[k] : 0xFFFFFFFFu);
			if (!heap.empty() && heap.front() < next_full) {
				std::pop_heap(heap.begin(), heap.end(), std::greater<>{});
				const uint32_t i = (uint32_t)heap.back();
				if (f.take_turn(st[i]))
					return;
				// Next turn in round ceil((turns + 1) * max_w / w),
				// found from the slack without a division.
				light_state &l = light[i];
				const int64_t d = (int64_t)l.rem - (int64_t)l.slack;
				uint64_t next;
				if (d > 0) {
					next = round + l.q + 1;
					l.slack = st[i].weight - (uint64_t)d;
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
				if (f.take_turn(st[every_round[k++]]))
					return;
			} else {
				break;
			}
		}
	}
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
	std::sort(keys.begin(), keys.end());
	for (size_t i = 1; i < keys.size(); i++)
		if (keys[i].same_address(keys[i - 1]))
			throw error("maglev: backend {} is listed twice",
				    backends[keys[i].index].address.str());

	std::vector<fill_state> st;
	st.reserve(keys.size());
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
		st.push_back({sluice_maglev_offset(addr, fam, m), sluice_maglev_skip(addr, fam, m), b.id,
			      b.weight, 0, 0});
		max_w = std::max(max_w, b.weight);
		sum_w += b.weight;
	}

	if (st.empty()) {
		std::fill(table.begin(), table.end(), SLUICE_MAGLEV_EMPTY);
		return;
	}
	table_filler f(table);
	if ((uint64_t)max_w * st.size() / sweep_max_over_mean <= sum_w)
		fill_sweep(f, st, max_w);
	else
		fill_heap(f, st, max_w, m);
}

std::vector<uint32_t> maglev_build(std::span<const maglev_backend> backends, uint32_t m)
{
	check_size(m); // before allocating M slots
	std::vector<uint32_t> table(m);
	maglev_build(backends, table);
	return table;
}

} // namespace sluice
