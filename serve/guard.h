/* The time-based defences of `serve`: a deadline for reading each request (slowloris: 408 and the
 * connection closed) and failed-login throttling per client address (429 with Retry-After). */
#ifndef HSMENROLL_SERVE_GUARD_H
#define HSMENROLL_SERVE_GUARD_H

#include <stdbool.h>
#include <sys/socket.h>

typedef struct serve_guard serve_guard;
typedef struct guard_conn guard_conn;

/* request_timeout: seconds a client has to send a whole request, headers and body, from the
 * connection's start or the previous answer (0: no deadline). max_failures: wrong passwords from
 * one address (within 15 minutes of each other) before it is locked out (0: never); the lockout
 * is 1 s, then doubles with each further failure up to 60 s; a success of a name takes away that
 * name's failures only. plain_http: a connection cut off gets
 * a 408 answer first (under TLS it is only closed). NULL when the watchdog cannot start. */
serve_guard *serve_guard_new(unsigned request_timeout, unsigned max_failures, bool plain_http);
void serve_guard_free(serve_guard *g);

/* A connection opened on socket fd (its deadline starts now), and closed: libmicrohttpd's
 * connection notifications, before the socket is closed. */
guard_conn *serve_guard_opened(serve_guard *g, int fd);
void serve_guard_closed(serve_guard *g, guard_conn *c);
/* The whole request is read: no deadline while it is answered. */
void serve_guard_request_read(serve_guard *g, guard_conn *c);
/* The answer is sent: the next request on the connection has its deadline. */
void serve_guard_answered(serve_guard *g, guard_conn *c);

/* Seconds the address must still wait before a password of it is checked (0: go ahead). */
long serve_guard_login_wait(serve_guard *g, const struct sockaddr *client);
/* Records a password check of the address for user name `name` (NULL: none could be read): a
 * failure counts toward the address's lockout, a success clears the failures of that name only
 * (never those of other names tried from the address). */
void serve_guard_login_result(serve_guard *g, const struct sockaddr *client, const char *name,
                              bool ok);

#endif
