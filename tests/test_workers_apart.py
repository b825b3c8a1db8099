from tests.workers_apart import redis_url_for_worker


def test_each_worker_moves_the_redis_database_and_leaves_other_urls_alone():
    assert redis_url_for_worker("redis://127.0.0.1:6379/15", 0) == "redis://127.0.0.1:6379/15"
    assert redis_url_for_worker("redis://127.0.0.1:6379/15", 1) == "redis://127.0.0.1:6379/0"
    assert redis_url_for_worker("redis://127.0.0.1:6379/3", 2) == "redis://127.0.0.1:6379/5"
    assert redis_url_for_worker("redis://127.0.0.1:6379", 1) == "redis://127.0.0.1:6379/1"
    assert redis_url_for_worker("filesystem://", 1) == "filesystem://"
