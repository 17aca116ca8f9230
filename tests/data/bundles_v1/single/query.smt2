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
 (let (($x18 (= t0 0)))
 (let (($x17 (<= len 0)))
 (=> $x17 $x18))))
(assert
 (>= x0_0 0))
(assert
 (<= x0_0 1))
(assert
 (let (($x26 (= x0_0 1)))
 (= $x26 (and (> len 0) (= t0 0)))))
(assert
 (>= x0_1 0))
(assert
 (<= x0_1 1))
(assert
 (let (($x32 (= x0_1 1)))
 (= $x32 (and (> len 0) (= t0 1)))))
(assert
 (>= x0_2 0))
(assert
 (<= x0_2 1))
(assert
 (let (($x38 (= x0_2 1)))
 (= $x38 (and (> len 0) (= t0 2)))))
(assert
 (>= x0_3 0))
(assert
 (<= x0_3 1))
(assert
 (let (($x45 (= x0_3 1)))
 (= $x45 (and (> len 0) (= t0 3)))))
(assert
 (= (+ x0_0 x0_1 x0_2 x0_3) (ite (> len 0) 1 0)))
(assert
 (>= t1 0))
(assert
 (< t1 4))
(assert
 (let (($x55 (= t1 0)))
 (let (($x54 (<= len 1)))
 (=> $x54 $x55))))
(assert
 (>= x1_0 0))
(assert
 (<= x1_0 1))
(assert
 (let (($x63 (= x1_0 1)))
 (= $x63 (and (> len 1) (= t1 0)))))
(assert
 (>= x1_1 0))
(assert
 (<= x1_1 1))
(assert
 (let (($x69 (= x1_1 1)))
 (= $x69 (and (> len 1) (= t1 1)))))
(assert
 (>= x1_2 0))
(assert
 (<= x1_2 1))
(assert
 (let (($x75 (= x1_2 1)))
 (= $x75 (and (> len 1) (= t1 2)))))
(assert
 (>= x1_3 0))
(assert
 (<= x1_3 1))
(assert
 (let (($x81 (= x1_3 1)))
 (= $x81 (and (> len 1) (= t1 3)))))
(assert
 (= (+ x1_0 x1_1 x1_2 x1_3) (ite (> len 1) 1 0)))
(assert
 (>= t2 0))
(assert
 (< t2 4))
(assert
 (let (($x91 (= t2 0)))
 (let (($x90 (<= len 2)))
 (=> $x90 $x91))))
(assert
 (>= x2_0 0))
(assert
 (<= x2_0 1))
(assert
 (let (($x99 (= x2_0 1)))
 (= $x99 (and (> len 2) (= t2 0)))))
(assert
 (>= x2_1 0))
(assert
 (<= x2_1 1))
(assert
 (let (($x105 (= x2_1 1)))
 (= $x105 (and (> len 2) (= t2 1)))))
(assert
 (>= x2_2 0))
(assert
 (<= x2_2 1))
(assert
 (let (($x111 (= x2_2 1)))
 (= $x111 (and (> len 2) (= t2 2)))))
(assert
 (>= x2_3 0))
(assert
 (<= x2_3 1))
(assert
 (let (($x117 (= x2_3 1)))
 (= $x117 (and (> len 2) (= t2 3)))))
(assert
 (= (+ x2_0 x2_1 x2_2 x2_3) (ite (> len 2) 1 0)))
(assert
 (let ((?x134 (ite false 1 0)))
 (let ((?x132 (ite (and (> len 2) (or (= t2 2) (= t2 3))) 1 0)))
 (let ((?x129 (ite (and (> len 1) (or (= t1 2) (= t1 3))) 1 0)))
 (let ((?x126 (ite (and (> len 0) (or (= t0 2) (= t0 3))) 1 0)))
 (>= (- (+ ?x126 ?x129 ?x132 0) (+ ?x134 ?x134 ?x134 0)) 1))))))
(assert
 (let (($x233 (ite (and (> len 0) (or (= t0 2))) false (ite (and (> len 0) (or (= t0 3))) true false))))
(let (($x239 (ite (and (> len 1) (or (= t1 2))) false (ite (and (> len 1) (or (= t1 3))) true $x233))))
(let (($x245 (ite (and (> len 2) (or (= t2 2))) false (ite (and (> len 2) (or (= t2 3))) true $x239))))
(let ((?x224 (* 4 x2_3)))
(let ((?x223 (* (- 4) x2_2)))
(let ((?x221 (* 2 x1_3)))
(let ((?x220 (* (- 2) x1_2)))
(let ((?x219 (* (- 2) x0_2)))
(and (distinct (> (+ 1 (+ ?x219 ?x220 ?x221 ?x223 ?x224)) 0) $x245) true))))))))))
(check-sat)
