// The namespace helper itself: namespaces and veths appear, carry TCP, and
// are gone after the Topology is.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netns.hpp"

using lg::testing::Topology;

namespace {

// Bounds connect, read and write on s: a dead veth fails the test in
// seconds instead of waiting out TCP's retries.
void bound(int s)
{
	timeval tv{5, 0};
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// A listening socket on port, accepting one connection and echoing one byte.
int serve_once(uint16_t port, int ready_fd)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	if (bind(s, reinterpret_cast<sockaddr *>(&a), sizeof a) || listen(s, 1))
		return 10;
	char r = 'r';
	if (write(ready_fd, &r, 1) != 1) // listening: the client may connect now
		return 11;
	pollfd p{s, POLLIN, 0};
	if (poll(&p, 1, 5000) != 1)
		return 12;
	int c = accept(s, nullptr, nullptr);
	bound(c);
	char b;
	if (read(c, &b, 1) != 1 || write(c, &b, 1) != 1)
		return 13;
	close(c);
	return 0;
}

TEST(Netns, VethCarriesTcpAndIsRemoved)
{
	std::string a_real;
	{
		Topology t;
		a_real = t.add_ns("a");
		t.add_ns("b");
		t.add_veth("a", "va", "b", "vb", "02:00:00:00:0a:01", "02:00:00:00:0b:01");
		ASSERT_TRUE(t.run("a", "ip addr add 10.99.0.1/24 dev va"));
		ASSERT_TRUE(t.run("b", "ip addr add 10.99.0.2/24 dev vb"));
		EXPECT_EQ(t.mac("a", "va"), "02:00:00:00:0a:01");
		EXPECT_GT(t.ifindex("b", "vb"), 0);

		int ready[2];
		ASSERT_EQ(pipe(ready), 0);
		int server = Topology::spawn_in_ns(t.real("a"), [&] { return serve_once(7000, ready[1]); });
		close(ready[1]); // a server that dies before it is ready ends the read
		char c;
		ASSERT_EQ(read(ready[0], &c, 1), 1);
		int rc = Topology::in_ns(t.real("b"), [] {
			int s = socket(AF_INET, SOCK_STREAM, 0);
			bound(s);
			sockaddr_in a{};
			a.sin_family = AF_INET;
			a.sin_port = htons(7000);
			inet_pton(AF_INET, "10.99.0.1", &a.sin_addr);
			if (connect(s, reinterpret_cast<sockaddr *>(&a), sizeof a))
				return 1;
			char x = 'x', y = 0;
			if (write(s, &x, 1) != 1 || read(s, &y, 1) != 1)
				return 2;
			return y == 'x' ? 0 : 3;
		});
		EXPECT_EQ(rc, 0);
		EXPECT_EQ(Topology::wait_child(server), 0);
		close(ready[0]);
	}
	EXPECT_EQ(lg::testing::sh("ip netns list").out.find(a_real), std::string::npos) << "namespace left behind";
}

} // namespace
