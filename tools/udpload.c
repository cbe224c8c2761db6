/* Closed-loop load for `make bench`: keep INFLIGHT CON GETs of /alarm outstanding against
 * 127.0.0.1:PORT for SECONDS, then print "req/s p50_ms p99_ms" on one line.
 *
 *   cc -O2 -o build/udpload tools/udpload.c && build/udpload PORT INFLIGHT SECONDS
 *
 * The same loop as tools/bench.py's Python client (one blocking recv per reply, requests
 * prebuilt, each timed from before its send), in C: with 16 in flight the Python client
 * itself is the limit against a fast server, which would squeeze every ratio toward 1.
 * Request k: message ID k, 2-byte token k, Uri-Path "alarm".
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double clock_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double started[65536];   /* per message ID: when it was sent; < 0: not outstanding */
static unsigned char reqs[65536][12];

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: udpload PORT INFLIGHT SECONDS\n");
        return 2;
    }
    int port = atoi(argv[1]), inflight = atoi(argv[2]);
    double seconds = atof(argv[3]);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || connect(s, (struct sockaddr *)&to, sizeof to) < 0) {
        perror("udpload");
        return 1;
    }
    struct timeval timeout = {0, 500000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    for (int m = 0; m < 65536; m++) {
        static const unsigned char tail[] = {0xb5, 'a', 'l', 'a', 'r', 'm'};
        unsigned char *r = reqs[m];
        r[0] = 0x42;            /* version 1, CON, token length 2 */
        r[1] = 0x01;            /* GET */
        r[2] = r[4] = m >> 8;   /* message ID and token */
        r[3] = r[5] = m & 0xff;
        memcpy(r + 6, tail, sizeof tail);
        started[m] = -1;
    }
    size_t cap = 1 << 24, n = 0;
    double *lat = malloc(cap * sizeof *lat);
    unsigned mid = 1;
    unsigned char buf[2048];
    double t0 = clock_s(), end = t0 + seconds;
#define FIRE() do { mid = (mid + 1) & 0xffff; started[mid] = clock_s(); send(s, reqs[mid], 12, 0); } while (0)
    for (int i = 0; i < inflight; i++)
        FIRE();
    while (clock_s() < end) {
        ssize_t got = recv(s, buf, sizeof buf, 0);
        if (got < 4) {          /* lost (timeout): refill the window */
            for (int m = 0; m < 65536; m++)
                started[m] = -1;
            for (int i = 0; i < inflight; i++)
                FIRE();
            continue;
        }
        unsigned m = buf[2] << 8 | buf[3];
        if (started[m] >= 0) {
            double t = clock_s() - started[m];
            started[m] = -1;
            if (n < cap)
                lat[n++] = t;
            FIRE();
        }
    }
    double elapsed = clock_s() - t0;
    if (!n) {
        printf("0 0 0\n");
        return 0;
    }
    qsort(lat, n, sizeof *lat, by_value);
    printf("%.1f %.4f %.4f\n", n / elapsed, lat[n / 2] * 1e3, lat[(size_t)(n * 0.99)] * 1e3);
    return 0;
}
