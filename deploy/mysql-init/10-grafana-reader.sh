#!/bin/sh
# A read-only MySQL user for Grafana's datasource (runs once, on first start of MySQL).
set -eu
mysql -uroot -p"${MYSQL_ROOT_PASSWORD}" <<SQL
CREATE USER IF NOT EXISTS 'grafana'@'%' IDENTIFIED BY '${GRAFANA_DB_PASSWORD}';
GRANT SELECT ON \`${MYSQL_DATABASE}\`.* TO 'grafana'@'%';
FLUSH PRIVILEGES;
SQL
