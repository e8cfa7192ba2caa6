// Every BPF object the build makes loads into the kernel and runs: an empty
// or broken object fails here (the lesson of Katran issue #260).
#include <gtest/gtest.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_ether.h>
#include <sys/resource.h>
#include <unistd.h>

#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "lg_xdp.skel.h"

extern "C" {
#include "lg_reasons.h"
}

namespace {

struct SkelDeleter {
	void operator()(lg_xdp *s) const { lg_xdp__destroy(s); }
};
using Skel = std::unique_ptr<lg_xdp, SkelDeleter>;

Skel load()
{
	Skel s(lg_xdp__open_and_load());
	return s;
}

// Run the program once over `frame`; returns the XDP action.
int run(lg_xdp *s, std::vector<uint8_t> frame)
{
	std::vector<uint8_t> out(frame.size() + 256);
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = frame.data(), .data_out = out.data(),
		    .data_size_in = uint32_t(frame.size()), .data_size_out = uint32_t(out.size()), .repeat = 1);
	int err = bpf_prog_test_run_opts(bpf_program__fd(s->progs.lg_xdp), &o);
	EXPECT_EQ(err, 0) << "BPF_PROG_TEST_RUN: " << strerror(-err);
	return int(o.retval);
}

uint64_t counter(lg_xdp *s, uint32_t reason)
{
	int ncpu = libbpf_num_possible_cpus();
	std::vector<uint64_t> v(static_cast<size_t>(ncpu));
	EXPECT_EQ(bpf_map__lookup_elem(s->maps.lg_reason_cnt, &reason, sizeof reason, v.data(), v.size() * sizeof(uint64_t), 0), 0);
	uint64_t sum = 0;
	for (auto x : v)
		sum += x;
	return sum;
}

std::vector<uint8_t> eth(std::vector<uint16_t> types)
{
	std::vector<uint8_t> f(12, 0x02);
	for (size_t i = 0; i < types.size(); i++) {
		f.push_back(uint8_t(types[i] >> 8));
		f.push_back(uint8_t(types[i]));
		if (i + 1 < types.size())
			f.insert(f.end(), {0, 1}); // VLAN TCI
	}
	f.resize(64, 0);
	return f;
}

TEST(BpfLoad, XdpObjectLoadsAndRuns)
{
	ASSERT_EQ(geteuid(), 0u) << "loading BPF needs root; CI runs as root";
	Skel s = load();
	ASSERT_TRUE(s) << "lg_xdp failed to load: " << strerror(errno);
	EXPECT_GT(bpf_program__insn_cnt(s->progs.lg_xdp), 10u) << "an empty program is a broken build";

	// Without tables: non-IP goes to the host, a zeroed "IPv4" header is
	// malformed, a third VLAN tag is too deep (the full decision is
	// tested in tests/xdp).
	EXPECT_EQ(run(s.get(), eth({ETH_P_ARP})), XDP_PASS);
	EXPECT_EQ(run(s.get(), eth({ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP})), XDP_PASS);
	EXPECT_EQ(run(s.get(), eth({ETH_P_IP})), XDP_DROP);
	EXPECT_EQ(run(s.get(), eth({ETH_P_8021AD, ETH_P_8021Q, ETH_P_8021Q, ETH_P_IP})), XDP_DROP);
	EXPECT_EQ(counter(s.get(), LG_REASON_NONE), 2u);
	EXPECT_EQ(counter(s.get(), LG_REASON_MALFORMED), 1u);
	EXPECT_EQ(counter(s.get(), LG_REASON_VLAN_DEPTH), 1u);
}

// The reason list as written (lg_reasons.h): numbered 0, 1, 2... in order
// (append-only: no gap, no reuse), each with a name of its own; the loaded
// counter map has a counter for each of them, zero at load, and none past.
TEST(BpfLoad, ReasonMapCoversEveryReason)
{
	struct Entry {
		unsigned num;
		const char *name;
	};
	const Entry list[] = {
#define LG_ENTRY_(sym, num, name) {num, name},
		LG_REASON_LIST(LG_ENTRY_)
#undef LG_ENTRY_
	};
	ASSERT_EQ(std::size(list), size_t(LG_REASON__COUNT)) << "a number skipped or given twice";
	std::set<std::string> names;
	for (size_t i = 0; i < std::size(list); i++) {
		EXPECT_EQ(list[i].num, i) << list[i].name;
		EXPECT_NE(std::string(list[i].name), "") << i;
		EXPECT_TRUE(names.insert(list[i].name).second) << "name given twice: " << list[i].name;
	}
	Skel s = load();
	ASSERT_TRUE(s);
	EXPECT_EQ(bpf_map__key_size(s->maps.lg_reason_cnt), sizeof(uint32_t));
	EXPECT_EQ(bpf_map__value_size(s->maps.lg_reason_cnt), sizeof(uint64_t));
	for (const Entry &e : list)
		EXPECT_EQ(counter(s.get(), e.num), 0u) << e.name; // counter() expects the lookup to succeed
	std::vector<uint64_t> v(static_cast<size_t>(libbpf_num_possible_cpus()));
	uint32_t past = uint32_t(std::size(list));
	EXPECT_NE(bpf_map__lookup_elem(s->maps.lg_reason_cnt, &past, sizeof past, v.data(), v.size() * sizeof(uint64_t), 0), 0)
		<< "a counter past the last reason";
}

} // namespace
