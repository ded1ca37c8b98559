from poolboard.lib.standby import sender_server

SERVERS = [(1, "db-primary.internal", 5432), (2, "db-replica.internal", 5432), (3, "127.0.0.1", 5433)]


def test_it_finds_the_server_at_the_receivers_sender():
    assert sender_server("db-primary.internal", 5432, SERVERS) == 1
    assert sender_server("DB-Primary.Internal.", 5432, SERVERS) == 1


def test_it_needs_the_port_to_match_too():
    assert sender_server("db-primary.internal", 5433, SERVERS) is None


def test_it_treats_the_loopback_spellings_as_one_host():
    assert sender_server("localhost", 5433, SERVERS) == 3
    assert sender_server("::1", 5433, SERVERS) == 3


def test_it_finds_nothing_without_a_sender_or_over_a_socket():
    assert sender_server(None, 5432, SERVERS) is None
    assert sender_server("", 5432, SERVERS) is None
    assert sender_server("db-primary.internal", None, SERVERS) is None
    assert sender_server("/var/run/postgresql", 5432, SERVERS) is None
    assert sender_server("elsewhere", 5432, SERVERS) is None


def test_it_refuses_to_guess_between_two_servers_at_one_address():
    assert sender_server("localhost", 5433, [*SERVERS, (4, "localhost", 5433)]) is None
