/*
 * redis_driver.c: the Redis peer of pgbench for regstack's benchmark.
 *
 * Drives a Redis server over a Unix socket the way pgbench drives
 * PostgreSQL: -c connections spread over -j threads, each thread
 * multiplexing its connections with poll(), one request in flight per
 * connection, for -T seconds or -t transactions per connection.  It prints
 * one line, "transactions=N seconds=S tps=R errors=E", and exits 1 when any
 * transaction failed (a wrong reply is a failure, as a failed \gset is for
 * pgbench).
 *
 * Workloads (-w):
 *   tokpair     a token pair: SET tok:<43-char random token> <row> EX 300,
 *               then GETDEL of that key, whose reply must be the row (two
 *               round trips, the same work as issue_token + consume_token).
 *   rl_spread   EVALSHA of the sliding-window script (-L file, a sorted set
 *               per key) on one of 100,000 keys chosen at random.
 *   rl_hot      the same on one key.
 * The rate-limit calls pass window 1 hour and max 1000000, so every call is
 * allowed and recorded; a denied call counts as an error.
 *
 * Build: cc -O2 -o redis_driver redis_driver.c -lhiredis -lpthread
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 256
#define TOKEN_CHARS 43
#define RL_KEYS 100000
#define RL_WINDOW_US "3600000000"
#define RL_MAX "1000000"

enum workload
{
	W_TOKPAIR, W_RL_SPREAD, W_RL_HOT
};

/* One connection and where it is in its transaction. */
typedef struct conn
{
	redisContext *ctx;
	int			id;
	int			step;			/* tokpair: 0 = SET sent, 1 = GETDEL sent */
	int			want_write;		/* output buffer not yet flushed */
	long		done;			/* finished transactions */
	long		errors;
	uint64_t	rng[2];			/* xorshift128+ state */
	char		key[64];
	char		value[96];
	long		seq;			/* rl: unique member per event */
} conn;

/* One thread and the connections it multiplexes. */
typedef struct worker
{
	pthread_t	thread;
	conn	   *conns;
	int			nconns;
} worker;

static const char *opt_socket;
static int	opt_conns = 8;
static int	opt_threads = 2;
static double opt_seconds = 0;
static long opt_txns = 0;
static enum workload opt_workload = W_TOKPAIR;
static char script_sha[41];
static double deadline;

/* Seconds since an arbitrary point, monotonic. */
static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Next 64 random bits of a connection (xorshift128+; not for secrets). */
static uint64_t
next_random(conn *c)
{
	uint64_t	s1 = c->rng[0];
	const uint64_t s0 = c->rng[1];

	c->rng[0] = s0;
	s1 ^= s1 << 23;
	c->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
	return c->rng[1] + s0;
}

/* Fill key with "tok:" and a fresh 43-character base64url token. */
static void
new_token_key(conn *c)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	uint64_t	bits = 0;
	int			have = 0;

	memcpy(c->key, "tok:", 4);
	for (int i = 0; i < TOKEN_CHARS; i++)
	{
		if (have < 6)
		{
			bits = next_random(c);
			have = 64;
		}
		c->key[4 + i] = alphabet[bits & 63];
		bits >>= 6;
		have -= 6;
	}
	c->key[4 + TOKEN_CHARS] = '\0';
}

/* Queue the next command of connection c; returns 0 when c is finished. */
static int
send_next(conn *c)
{
	if (c->step == 0)
	{
		if ((opt_txns > 0 && c->done >= opt_txns) ||
			(opt_txns == 0 && now_seconds() >= deadline))
			return 0;
	}
	switch (opt_workload)
	{
		case W_TOKPAIR:
			if (c->step == 0)
			{
				new_token_key(c);
				snprintf(c->value, sizeof(c->value), "pre_auth|user%ld|%ld",
						 (long) (next_random(c) % 100000), (long) time(NULL) + 300);
				redisAppendCommand(c->ctx, "SET %s %s EX 300", c->key, c->value);
			}
			else
				redisAppendCommand(c->ctx, "GETDEL %s", c->key);
			break;
		case W_RL_SPREAD:
		case W_RL_HOT:
			if (opt_workload == W_RL_HOT)
				strcpy(c->key, "rl:login_attempt:hot");
			else
				snprintf(c->key, sizeof(c->key), "rl:login_attempt:k%ld",
						 (long) (next_random(c) % RL_KEYS) + 1);
			snprintf(c->value, sizeof(c->value), "%d:%ld", c->id, c->seq++);
			redisAppendCommand(c->ctx, "EVALSHA %s 1 %s %s %s %s", script_sha,
							   c->key, RL_WINDOW_US, RL_MAX, c->value);
			break;
	}
	c->want_write = 1;
	return 1;
}

/* Check a reply and advance c's transaction; counts errors. */
static void
handle_reply(conn *c, redisReply *r)
{
	int			ok;

	switch (opt_workload)
	{
		case W_TOKPAIR:
			if (c->step == 0)
			{
				ok = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0;
				if (ok)
				{
					c->step = 1;
					return;
				}
			}
			else
			{
				ok = r->type == REDIS_REPLY_STRING &&
					strcmp(r->str, c->value) == 0 &&
					strncmp(r->str, "pre_auth|", 9) == 0;
				c->step = 0;
			}
			break;
		default:
			ok = r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
				r->element[0]->type == REDIS_REPLY_INTEGER &&
				r->element[0]->integer == 1;
			break;
	}
	if (ok)
		c->done++;
	else
	{
		if (c->errors++ == 0)
			fprintf(stderr, "redis_driver: unexpected reply (type %d%s%s)\n",
					r->type, r->str ? ": " : "", r->str ? r->str : "");
		c->step = 0;
	}
}

/* Thread body: run the thread's connections until all are finished. */
static void *
worker_main(void *arg)
{
	worker	   *w = arg;
	struct pollfd fds[MAX_CONNS];
	int			active[MAX_CONNS];
	int			nactive = w->nconns;

	for (int i = 0; i < w->nconns; i++)
		active[i] = send_next(&w->conns[i]);
	while (nactive > 0)
	{
		nactive = 0;
		for (int i = 0; i < w->nconns; i++)
		{
			conn	   *c = &w->conns[i];

			fds[i].fd = c->ctx->fd;
			fds[i].events = 0;
			fds[i].revents = 0;
			if (!active[i])
			{
				fds[i].fd = -1;
				continue;
			}
			nactive++;
			if (c->want_write)
			{
				int			done = 0;

				if (redisBufferWrite(c->ctx, &done) != REDIS_OK)
				{
					fprintf(stderr, "redis_driver: write: %s\n", c->ctx->errstr);
					c->errors++;
					active[i] = 0;
					fds[i].fd = -1;
					continue;
				}
				c->want_write = !done;
			}
			fds[i].events = c->want_write ? POLLOUT : POLLIN;
		}
		if (nactive == 0)
			break;
		if (poll(fds, w->nconns, 1000) < 0 && errno != EINTR)
		{
			perror("redis_driver: poll");
			exit(2);
		}
		for (int i = 0; i < w->nconns; i++)
		{
			conn	   *c = &w->conns[i];
			void	   *reply;

			if (!active[i] || !(fds[i].revents & (POLLIN | POLLERR | POLLHUP)))
				continue;
			if (redisBufferRead(c->ctx) != REDIS_OK)
			{
				fprintf(stderr, "redis_driver: read: %s\n", c->ctx->errstr);
				c->errors++;
				active[i] = 0;
				continue;
			}
			for (;;)
			{
				reply = NULL;
				if (redisGetReplyFromReader(c->ctx, &reply) != REDIS_OK)
				{
					fprintf(stderr, "redis_driver: protocol: %s\n", c->ctx->errstr);
					c->errors++;
					active[i] = 0;
					break;
				}
				if (reply == NULL)
					break;
				handle_reply(c, reply);
				freeReplyObject(reply);
				active[i] = send_next(c);
				if (!active[i])
					break;
			}
		}
	}
	return NULL;
}

/* Load the Lua script from path on a blocking connection; keep its SHA1. */
static void
load_script(const char *path)
{
	FILE	   *f = fopen(path, "r");
	char		buf[8192];
	size_t		len;
	redisContext *ctx;
	redisReply *r;

	if (f == NULL)
	{
		perror(path);
		exit(2);
	}
	len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	ctx = redisConnectUnix(opt_socket);
	if (ctx == NULL || ctx->err)
	{
		fprintf(stderr, "redis_driver: connect: %s\n", ctx ? ctx->errstr : "out of memory");
		exit(2);
	}
	r = redisCommand(ctx, "SCRIPT LOAD %s", buf);
	if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 40)
	{
		fprintf(stderr, "redis_driver: SCRIPT LOAD failed%s%s\n",
				r && r->str ? ": " : "", r && r->str ? r->str : "");
		exit(2);
	}
	memcpy(script_sha, r->str, 40);
	freeReplyObject(r);
	redisFree(ctx);
}

/* Print the usage line and exit. */
static void
usage(void)
{
	fprintf(stderr, "usage: redis_driver -s SOCKET -w tokpair|rl_spread|rl_hot "
			"[-L script.lua] [-c conns] [-j threads] (-T seconds | -t txns)\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static conn conns[MAX_CONNS];
	worker		workers[MAX_CONNS];
	const char *script = NULL;
	long		done = 0,
				errors = 0;
	double		start,
				elapsed;
	FILE	   *urandom;
	int			opt;

	while ((opt = getopt(argc, argv, "s:w:L:c:j:T:t:")) != -1)
	{
		switch (opt)
		{
			case 's': opt_socket = optarg; break;
			case 'w':
				if (strcmp(optarg, "tokpair") == 0) opt_workload = W_TOKPAIR;
				else if (strcmp(optarg, "rl_spread") == 0) opt_workload = W_RL_SPREAD;
				else if (strcmp(optarg, "rl_hot") == 0) opt_workload = W_RL_HOT;
				else usage();
				break;
			case 'L': script = optarg; break;
			case 'c': opt_conns = atoi(optarg); break;
			case 'j': opt_threads = atoi(optarg); break;
			case 'T': opt_seconds = atof(optarg); break;
			case 't': opt_txns = atol(optarg); break;
			default: usage();
		}
	}
	if (opt_socket == NULL || opt_conns < 1 || opt_conns > MAX_CONNS ||
		opt_threads < 1 || opt_threads > opt_conns ||
		(opt_seconds <= 0 && opt_txns <= 0) ||
		(opt_workload != W_TOKPAIR && script == NULL))
		usage();
	if (script)
		load_script(script);

	urandom = fopen("/dev/urandom", "r");
	for (int i = 0; i < opt_conns; i++)
	{
		conns[i].id = i;
		if (urandom == NULL || fread(conns[i].rng, sizeof(conns[i].rng), 1, urandom) != 1)
		{
			conns[i].rng[0] = 0x9E3779B97F4A7C15ULL * (i + 1);
			conns[i].rng[1] = (uint64_t) time(NULL) ^ (uint64_t) getpid();
		}
		conns[i].ctx = redisConnectUnixNonBlock(opt_socket);
		if (conns[i].ctx == NULL || conns[i].ctx->err)
		{
			fprintf(stderr, "redis_driver: connect: %s\n",
					conns[i].ctx ? conns[i].ctx->errstr : "out of memory");
			return 2;
		}
	}
	if (urandom)
		fclose(urandom);

	start = now_seconds();
	deadline = start + opt_seconds;
	for (int t = 0; t < opt_threads; t++)
	{
		int			first = t * opt_conns / opt_threads;
		int			last = (t + 1) * opt_conns / opt_threads;

		workers[t].conns = &conns[first];
		workers[t].nconns = last - first;
		pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]);
	}
	for (int t = 0; t < opt_threads; t++)
		pthread_join(workers[t].thread, NULL);
	elapsed = now_seconds() - start;

	for (int i = 0; i < opt_conns; i++)
	{
		done += conns[i].done;
		errors += conns[i].errors;
		redisFree(conns[i].ctx);
	}
	printf("transactions=%ld seconds=%.3f tps=%.1f errors=%ld\n",
		   done, elapsed, done / elapsed, errors);
	return errors > 0 ? 1 : 0;
}
