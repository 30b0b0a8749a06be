"""PostgreSQL: pool, migrations, named SQL, repositories, partition maintenance."""
