/* OpenMP runtime queries that Cython cannot express conditionally.
 *
 * The extension is compiled with or without OpenMP (see setup.py); these
 * wrappers give the Python layer one answer in both cases, so no Cython code
 * needs `cimport openmp` (which would fail to compile without omp.h).
 */
#ifndef XENT_OMP_H
#define XENT_OMP_H

#ifdef _OPENMP
#include <omp.h>
static int xent_openmp_enabled(void) { return 1; }
static int xent_max_threads(void) { return omp_get_max_threads(); }
static int xent_num_procs(void) { return omp_get_num_procs(); }
static int xent_openmp_version(void) { return _OPENMP; }
#else
static int xent_openmp_enabled(void) { return 0; }
static int xent_max_threads(void) { return 1; }
static int xent_num_procs(void) { return 1; }
static int xent_openmp_version(void) { return 0; }
#endif

#endif
