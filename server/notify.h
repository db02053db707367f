/* LISTEN/NOTIFY: wakes held long-polls when any relay on the database commits a push. */
#ifndef SR_NOTIFY_H
#define SR_NOTIFY_H

/* Starts the listener thread on its own connection. 0 on success. */
int notify_start(const char *conninfo);
void notify_stop(void);
/* 1 while the listener's LISTEN is in force (held polls are woken by pushes). */
int notify_connected(void);

#endif
