(set-logic QF_LIA)
; benchmark generated from python API
(set-info :status unknown)
(declare-fun len () Int)
(declare-fun t0 () Int)
(declare-fun x0_0 () Int)
(declare-fun x0_1 () Int)
(declare-fun x0_2 () Int)
(declare-fun x0_3 () Int)
(declare-fun t1 () Int)
(declare-fun x1_0 () Int)
(declare-fun x1_1 () Int)
(declare-fun x1_2 () Int)
(declare-fun x1_3 () Int)
(declare-fun t2 () Int)
(declare-fun x2_0 () Int)
(declare-fun x2_1 () Int)
(declare-fun x2_2 () Int)
(declare-fun x2_3 () Int)
(assert
 (>= len 1))
(assert
 (<= len 3))
(assert
 (>= t0 0))
(assert
 (< t0 4))
(assert
 (let (($x95 (= t0 0)))
 (let (($x222 (<= len 0)))
 (=> $x222 $x95))))
(assert
 (>= x0_0 0))
(assert
 (<= x0_0 1))
(assert
 (let (($x100 (= x0_0 1)))
 (= $x100 (and (> len 0) (= t0 0)))))
(assert
 (>= x0_1 0))
(assert
 (<= x0_1 1))
(assert
 (let (($x242 (= x0_1 1)))
 (= $x242 (and (> len 0) (= t0 1)))))
(assert
 (>= x0_2 0))
(assert
 (<= x0_2 1))
(assert
 (let (($x235 (= x0_2 1)))
 (= $x235 (and (> len 0) (= t0 2)))))
(assert
 (>= x0_3 0))
(assert
 (<= x0_3 1))
(assert
 (let (($x228 (= x0_3 1)))
 (= $x228 (and (> len 0) (= t0 3)))))
(assert
 (= (+ x0_0 x0_1 x0_2 x0_3) (ite (> len 0) 1 0)))
(assert
 (>= t1 0))
(assert
 (< t1 4))
(assert
 (let (($x245 (= t1 0)))
 (let (($x244 (<= len 1)))
 (=> $x244 $x245))))
(assert
 (>= x1_0 0))
(assert
 (<= x1_0 1))
(assert
 (let (($x94 (= x1_0 1)))
 (= $x94 (and (> len 1) (= t1 0)))))
(assert
 (>= x1_1 0))
(assert
 (<= x1_1 1))
(assert
 (let (($x18 (= x1_1 1)))
 (= $x18 (and (> len 1) (= t1 1)))))
(assert
 (>= x1_2 0))
(assert
 (<= x1_2 1))
(assert
 (let (($x29 (= x1_2 1)))
 (= $x29 (and (> len 1) (= t1 2)))))
(assert
 (>= x1_3 0))
(assert
 (<= x1_3 1))
(assert
 (let (($x35 (= x1_3 1)))
 (= $x35 (and (> len 1) (= t1 3)))))
(assert
 (= (+ x1_0 x1_1 x1_2 x1_3) (ite (> len 1) 1 0)))
(assert
 (>= t2 0))
(assert
 (< t2 4))
(assert
 (let (($x48 (= t2 0)))
 (let (($x47 (<= len 2)))
 (=> $x47 $x48))))
(assert
 (>= x2_0 0))
(assert
 (<= x2_0 1))
(assert
 (let (($x56 (= x2_0 1)))
 (= $x56 (and (> len 2) (= t2 0)))))
(assert
 (>= x2_1 0))
(assert
 (<= x2_1 1))
(assert
 (let (($x67 (= x2_1 1)))
 (= $x67 (and (> len 2) (= t2 1)))))
(assert
 (>= x2_2 0))
(assert
 (<= x2_2 1))
(assert
 (let (($x73 (= x2_2 1)))
 (= $x73 (and (> len 2) (= t2 2)))))
(assert
 (>= x2_3 0))
(assert
 (<= x2_3 1))
(assert
 (let (($x80 (= x2_3 1)))
 (= $x80 (and (> len 2) (= t2 3)))))
(assert
 (= (+ x2_0 x2_1 x2_2 x2_3) (ite (> len 2) 1 0)))
(assert
 (let ((?x103 (ite false 1 0)))
 (let ((?x101 (ite (and (> len 2) (or (= t2 2) (= t2 3))) 1 0)))
 (let ((?x97 (ite (and (> len 1) (or (= t1 2) (= t1 3))) 1 0)))
 (let ((?x90 (ite (and (> len 0) (or (= t0 2) (= t0 3))) 1 0)))
 (>= (- (+ ?x90 ?x97 ?x101 0) (+ ?x103 ?x103 ?x103 0)) 1))))))
(assert
 (= len 3))
(assert
 (let (($x315 (ite (and (> len 0) (or (= t0 2))) false (ite (and (> len 0) (or (= t0 3))) true false))))
(let (($x297 (ite (and (> len 1) (or (= t1 2))) false (ite (and (> len 1) (or (= t1 3))) true $x315))))
(let (($x348 (ite (and (> len 2) (or (= t2 2))) false (ite (and (> len 2) (or (= t2 3))) true $x297))))
(let ((?x363 (* 4 x2_3)))
(let ((?x403 (* (- 4) x2_2)))
(let ((?x169 (* 2 x1_3)))
(let ((?x337 (* (- 2) x1_2)))
(let ((?x340 (* (- 2) x0_2)))
(let ((?x336 (+ 1 (+ ?x340 ?x337 ?x169 ?x403 ?x363))))
(let (($x349 (and (distinct (> ?x336 0) $x348) true)))
(or $x349))))))))))))
(check-sat)
